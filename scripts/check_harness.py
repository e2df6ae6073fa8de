"""The client checks' shared harness: run each check at once, print one line per check, and
report the failures at the end (`scripts/openai_client_check.py`, `scripts/boto3_check.py`)."""
import sys
import traceback

failures = []


def check(name):
    """Run the decorated function as a check named `name`, now."""

    def run(fn):
        try:
            detail = fn()
            print(f"ok    {name}" + (f": {detail}" if detail else ""))
        except Exception as e:  # noqa: BLE001 - any failure is reported, then the next check runs
            failures.append(name)
            print(f"FAIL  {name}: {type(e).__name__}: {e}")
            traceback.print_exc(file=sys.stderr)
        return fn

    return run


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def finish():
    """The exit status: 1 if any check failed."""
    if failures:
        print(f"{len(failures)} check(s) failed: {', '.join(failures)}")
        return 1
    print("all checks passed")
    return 0
