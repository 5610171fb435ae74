#!/usr/bin/env python3
"""Runs the official WASI test suite's wasm32-wasip1 tests through `chorus run`.

    python3 tests/wasi-testsuite.py --chorus target/release/chorus --suite SUITE/tests

SUITE is a checkout of github.com/WebAssembly/wasi-testsuite at its
`prod/testsuite-base` branch (which holds the built .wasm files; they are not
copied here). Each test is run as the suite's specification says (doc/
specification.md): its JSON gives `args`, `env`, a `root` directory preopened
at `/` (here `--dir ROOT::/`), the expected `exit_code` (default 0) and, for
`read` operations, the expected stdout. Prints one line per test and
`passed/total`; exits 1 when any test fails. A measurement tool, not part of
CI (the suite's binaries are not ours to commit, and CI has no network).
"""

import argparse
import json
import pathlib
import subprocess
import sys


def spec_of(wasm: pathlib.Path) -> dict:
    """The legacy or operation-based specification, as one dict."""
    path = wasm.with_suffix(".json")
    spec = json.loads(path.read_text()) if path.exists() else {}
    out = {
        "args": spec.get("args", []),
        "env": spec.get("env", {}),
        "root": spec.get("root"),
        "exit_code": spec.get("exit_code", 0),
        "stdout": spec.get("stdout"),
    }
    for op in spec.get("operations", []):
        kind = op.get("type")
        if kind == "run":
            out["args"] = op.get("args", [])
            out["env"] = op.get("env", {})
            out["root"] = op.get("root")
        elif kind == "wait":
            out["exit_code"] = op.get("exit_code", 0)
        elif kind == "read" and op.get("id", "stdout") == "stdout":
            out["stdout"] = op.get("payload", "")
        elif kind in ("connect", "send", "recv"):
            out["network"] = True
    return out


def run_one(chorus: str, wasm: pathlib.Path) -> tuple[bool, str]:
    spec = spec_of(wasm)
    if spec.get("network"):
        return False, "needs sockets (not in the sandbox)"
    argv = [chorus, "run", "--input", "/dev/null"]
    for k, v in spec["env"].items():
        argv += ["--env", f"{k}={v}"]
    if spec["root"]:
        argv += ["--dir", f"{wasm.parent / spec['root']}::/"]
    argv.append(str(wasm))
    for a in spec["args"]:
        argv += ["--arg", a]
    try:
        p = subprocess.run(argv, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False, "chorus run did not finish in 120 s"
    err = p.stderr.decode(errors="replace")
    # `chorus run` exits with the task's code; any other failure (a trap,
    # a limit, a refusal) says "task failed: <outcome>" or "error:" and exits 1.
    failed = [l for l in err.splitlines() if l.startswith("error:")]
    if failed and "exit code" not in failed[-1]:
        return False, failed[-1][:300]
    if p.returncode != spec["exit_code"]:
        return False, f"exit {p.returncode}, expected {spec['exit_code']}; stderr: {err[-300:]!r}"
    out = p.stdout.decode(errors="replace")
    if spec["stdout"] is not None and out != spec["stdout"]:
        return False, f"stdout {out!r}, expected {spec['stdout']!r}"
    return True, "ok"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chorus", default="target/release/chorus")
    ap.add_argument("--suite", required=True, help="the tests/ folder of prod/testsuite-base")
    args = ap.parse_args()
    tests = sorted(pathlib.Path(args.suite).glob("*/testsuite/wasm32-wasip1/*.wasm"))
    if not tests:
        print(f"no wasm32-wasip1 tests under {args.suite}", file=sys.stderr)
        return 2
    passed = 0
    for wasm in tests:
        ok, why = run_one(args.chorus, wasm)
        passed += ok
        name = f"{wasm.parts[-4]}/{wasm.stem}"
        print(f"{'PASS' if ok else 'FAIL'} {name}" + ("" if ok else f": {why}"))
    print(f"{passed}/{len(tests)} passed")
    return 0 if passed == len(tests) else 1


if __name__ == "__main__":
    sys.exit(main())
