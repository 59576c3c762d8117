#!/usr/bin/env bash
# benchmarks/gpu_run.sh [OUT_DIR]: the whole GPU run, in under 8 minutes, with no network.
#
# On a machine with an NVIDIA GPU (Python with a CUDA torch and triton; scikit-build-core, pybind11,
# cmake and ninja installed; pytest for the tests), from anywhere in the checkout:
#   1. env        nvidia-smi, versions                                     -> env.log
#   2. build      pip install --no-build-isolation --no-deps -e . for this GPU's architecture -> build.log
#   3. tests-*    the CUDA and the Triton test subsets (pytest -k, TRITON_INTERPRET unset)  -> tests-*.log/.xml
#   4. bench-*    every suite with --device cuda under a time budget       -> <suite>-cuda.json/.md, bench-*.log
#   5. report     REPORT.md + plots of these results in OUT_DIR (the README is not touched) -> report.log
# OUT_DIR (default benchmarks/results/gpu/) also gets summary.json: each step's status
# (passed / failed / timed out / skipped), exit code and seconds.
#
# Exit codes: 0 every step passed; 1 some step failed or timed out (see summary.json and the logs);
# 3 no CUDA GPU is visible (nothing was built, tested or measured; summary.json says "no GPU").
#
# Environment: PYTHON (default python3), PYCMLT_WHEELS=<folder of wheels> to install extra packages
# offline first (e.g. liger_kernel, so that Liger-Kernel is benchmarked), GPU_RUN_QUICK=1 for the
# --quick shapes, GPU_RUN_TOTAL_S (default 470) for the overall budget.
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OUT="${1:-$ROOT/benchmarks/results/gpu}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PYTHON:-python3}"
TOTAL_S="${GPU_RUN_TOTAL_S:-470}"
START_S=$(date +%s)
STEPS="$OUT/.steps.tsv"
: > "$STEPS"
cd "$ROOT" || exit 1

# Budgets (seconds) of each step; a step never gets more than what is left of TOTAL_S.
BUILD_S=140
TESTS_CUDA_S=45
TESTS_TRITON_S=65
REPORT_S=20
# per suite: the soft budget given to the suite (--time-budget: no new measurement starts after it);
# its hard limit (timeout) adds 25 s for start-up, the measurement in flight and writing the JSON
SUITES=(ce bce fused-linear contrastive alignment index train-step grid)
declare -A BENCH_S=([ce]=18 [bce]=13 [fused-linear]=20 [contrastive]=26 [alignment]=10 [index]=8 [train-step]=18 [grid]=45)

write_summary() {  # write_summary STATUS [MESSAGE]
  "$PY" - "$OUT" "$STEPS" "$1" "${2:-}" "$START_S" <<'EOF' || echo "{\"status\": \"$1\"}" > "$OUT/summary.json"
import glob, json, os, platform, re, subprocess, sys, time
out, steps, status, message, start = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
rows = []
for line in open(steps):
    name, state, rc, secs, log = line.rstrip("\n").split("\t")
    row = {"step": name, "status": state, "exit_code": int(rc), "seconds": int(secs), "log": log}
    try:  # pytest's closing line ("12 passed, 1 failed in 30.1s"), where the step ran pytest
        tail = [l.strip("= \n") for l in open(os.path.join(out, log), errors="replace")
                if re.search(r"\d+ (passed|failed|error)", l)]
        if tail:
            row["result"] = tail[-1]
    except OSError:
        pass
    rows.append(row)
def commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or os.environ.get("PYCMLT_GIT_COMMIT")
    except Exception:
        return os.environ.get("PYCMLT_GIT_COMMIT")
summary = {"status": status, "message": message or None, "gpu": status != "no GPU",
           "host": platform.node(), "git_commit": commit(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "total_seconds": int(time.time()) - start, "steps": rows,
           "results_json": sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "*.json"))
                                  if not p.endswith("summary.json")),
           "passed": [r["step"] for r in rows if r["status"] == "passed"],
           "not_passed": [r["step"] for r in rows if r["status"] != "passed"]}
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")
EOF
}

left_s() { echo $(( TOTAL_S - ($(date +%s) - START_S) )); }

run_step() {  # run_step NAME BUDGET_S 'SHELL COMMAND': runs it with bash -c under `timeout`, logs to NAME.log
  local name="$1" budget="$2"; shift 2
  local left; left=$(left_s)
  local log="$OUT/$name.log"
  if (( left < 10 )); then
    printf '%s\tskipped\t-1\t0\t%s\n' "$name" "$name.log" >> "$STEPS"
    echo "[gpu_run] $name: skipped (the overall budget of ${TOTAL_S}s is spent)"
    echo "skipped: the overall budget of ${TOTAL_S}s was spent" > "$log"
    write_summary running
    return 1
  fi
  (( budget > left )) && budget=$left
  echo "[gpu_run] $name (budget ${budget}s): ${1%%$'\n'*}"
  local t0 rc state; t0=$(date +%s)
  timeout --kill-after=10 "$budget" bash -c "$1" > "$log" 2>&1
  rc=$?
  case $rc in
    0) state=passed ;;
    124|137) state="timed out" ;;
    *) state=failed ;;
  esac
  local secs=$(( $(date +%s) - t0 ))
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$state" "$rc" "$secs" "$name.log" >> "$STEPS"
  echo "[gpu_run] $name: $state (exit $rc, ${secs}s)"
  if (( rc != 0 )); then tail -n 15 "$log" | sed 's/^/    /'; echo; fi
  write_summary running
  return $rc
}

# ---------------------------------------------------------------------------------------------- 0. GPU?
if ! command -v "$PY" > /dev/null 2>&1; then
  echo "gpu_run.sh: no Python interpreter '$PY' (set PYTHON=...)" >&2
  exit 1
fi
gpu_check=$("$PY" -c 'import torch; print("yes" if torch.cuda.is_available() else f"no: torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)")' 2>&1 | tail -n 1)
if [[ "$gpu_check" != "yes" ]]; then
  [[ "$gpu_check" == no:* ]] || gpu_check="no: torch does not import with $PY ($gpu_check)"
  msg="no CUDA GPU here, ${gpu_check#no: }. Nothing was built, tested or measured: run benchmarks/gpu_run.sh on a machine with an NVIDIA GPU and a CUDA build of torch."
  echo "gpu_run.sh: $msg" >&2
  write_summary "no GPU" "$msg"
  exit 3
fi
unset TRITON_INTERPRET
export PYTHONUNBUFFERED=1

# ---------------------------------------------------------------------------------------------- 1. env
export PY
# shellcheck disable=SC2016  # $PY expands in the step's own shell (exported)
run_step env 30 'nvidia-smi || true
"$PY" -c "import sys, torch; print(\"python\", sys.version); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda); print(\"gpu\", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))"
"$PY" -c "import triton; print(\"triton\", triton.__version__)" || true
"$PY" -m pip list 2>/dev/null | grep -i -E "^(torch|triton|pytest|pytest-xdist|hypothesis|faiss-cpu|faiss-gpu|liger.kernel|scikit-build-core|pybind11|cmake|ninja|matplotlib) " || true'

if [[ -n "${PYCMLT_WHEELS:-}" ]]; then
  run_step wheels 60 "\"\$PY\" -m pip install --no-index --no-deps $(printf '%q' "$PYCMLT_WHEELS")/*.whl"
fi

# ---------------------------------------------------------------------------------------------- 2. build
ARCH=$("$PY" -c 'import torch; M, m = torch.cuda.get_device_capability(0); print(f"{M}{m}")')
export PYCMLT_CUDA_ARCHS="${PYCMLT_CUDA_ARCHS:-$ARCH}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# shellcheck disable=SC2016
run_step build "$BUILD_S" '"$PY" -m pip install --no-build-isolation --no-deps -e . &&
"$PY" -c "import pycmlt._extension as e, pycmlt.ops as o; assert e.cuda_kernels_available(), \"no CUDA kernels in the extension: %s\" % e.LOAD_ERROR; print(\"backends on cuda:\", o.available_backends(\"cuda\"))"'
build_ok=$?

# ---------------------------------------------------------------------------------------------- 3. tests
# Test ids carry the device and backend (e.g. test_x[cuda-cuda], test_x[cuda-triton]); tests marked
# `cuda` match too. test_cuda_compile only compiles sources with nvcc (the CPU machine's test) and is left out.
# A test module that cannot be imported here (FAISS is not on a bare GPU machine: test_word_index)
# is left out rather than stopping the collection.
PYTEST_OPTS="-q -p no:cacheprovider --continue-on-collection-errors"
if "$PY" -c 'import xdist' > /dev/null 2>&1; then PYTEST_OPTS+=" -n 4"; fi
if ! "$PY" -c 'import faiss' > /dev/null 2>&1; then
  echo "[gpu_run] FAISS is not installed: tests/test_word_index.py is left out (PYCMLT_WHEELS can bring faiss-cpu)"
  PYTEST_OPTS+=" --ignore=tests/test_word_index.py"
fi
pytest_subset() {  # pytest_subset NAME EXPRESSION -> the command line
  echo "\"\$PY\" -m pytest tests $PYTEST_OPTS -k $(printf '%q' "$2") --junitxml=$(printf '%q' "$OUT/$1.xml")"
}
if (( build_ok == 0 )); then
  run_step tests-cuda "$TESTS_CUDA_S" "$(pytest_subset tests-cuda "cuda and not triton and not test_cuda_compile")"
  run_step tests-triton "$TESTS_TRITON_S" "$(pytest_subset tests-triton "triton and not test_cuda_compile")"
else
  echo "[gpu_run] the build failed: the tests and the pycmlt cuda providers are skipped; the benchmarks still run (eager, torch.compile, triton)"
  printf '%s\tskipped\t-1\t0\t%s\n' tests build.log >> "$STEPS"
fi

# ---------------------------------------------------------------------------------------------- 4. benchmarks
QUICK=""
[[ "${GPU_RUN_QUICK:-0}" == "1" ]] && QUICK="--quick"
for suite in "${SUITES[@]}"; do
  soft=${BENCH_S[$suite]}
  run_step "bench-$suite" $(( soft + 25 )) \
    "\"\$PY\" -m benchmarks $suite --device cuda --out $(printf '%q' "$OUT") --time-budget $soft --quiet $QUICK"
done

# ---------------------------------------------------------------------------------------------- 5. report
run_step report "$REPORT_S" \
  "\"\$PY\" -m benchmarks report --results $(printf '%q' "$OUT") --out $(printf '%q' "$OUT") --no-readme $QUICK"

status=passed
if grep -q -v -P '\tpassed\t' "$STEPS"; then status=failed; fi
write_summary "$status"
echo "[gpu_run] done in $(( $(date +%s) - START_S ))s: $status; results, logs and summary.json in $OUT"
[[ "$status" == passed ]] && exit 0 || exit 1
