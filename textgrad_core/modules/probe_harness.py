"""The function sample-and-filter runs inside the sandbox, next to each candidate program (sent as its source).

It lives in a module of its own, as real code, because its source is what the sandbox receives: it must use only
the standard library and nothing else from this package.
"""


def run_public_tests_and_probes(tests, entry_point, probes):
    """Run `tests` (a HumanEval-style `check(candidate)`) on the program's `entry_point`, then call it on each probe.

    Returns {"passed": bool, "error": str, "outputs": [repr of each result or the exception's name]}.
    """
    import json as _json  # noqa: F401 - the sandbox child serialises the return value itself

    function = globals().get(entry_point)
    if function is None:
        return {"passed": False, "error": f"the program defines no function {entry_point}", "outputs": []}
    scope = dict(globals())
    passed, error = True, ""
    try:
        exec(compile(tests, "<public tests>", "exec"), scope)
        scope["check"](function)
    except AssertionError as exc:
        passed, error = False, f"AssertionError {exc}".strip()
    except Exception as exc:  # any crash of the program under the tests is a failed test
        passed, error = False, f"{type(exc).__name__}: {exc}"
    outputs = []
    for args in probes:
        try:
            outputs.append(repr(function(*args)))
        except Exception as exc:  # the behaviour on a probe includes how the program fails
            outputs.append(f"raises {type(exc).__name__}")
    return {"passed": passed, "error": error[:300], "outputs": outputs}
