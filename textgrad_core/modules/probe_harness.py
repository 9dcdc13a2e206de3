"""The judge sample-and-filter runs for each candidate program: a checked run's trusted side (sent as its source).

The candidate program runs in one sandbox child; this function runs in another (textgrad_core.sandbox.acheck_program)
and reaches the program only through `__peer__`, which sends plain arguments and rebuilds plain return values. So
the public tests, their asserts and the comparison all run where no code of the program ever ran: the program cannot
report its own pass, patch the asserts, return an always-equal object, exit early "successfully" or read the tests.
It lives in a module of its own, as real code, because its source is what the judge child receives: it must use only
the standard library and nothing else from this package.
"""


def judge_public_tests_and_probes(tests, entry_point, probes, filename):
    """Run `tests` (a HumanEval-style `check(candidate)`) on the peer's `entry_point`, then call it on each probe.

    Returns {"passed": bool, "error": str, "outputs": [repr of each result, or how the call failed]}.
    """
    peer = __peer__  # noqa: F821 - the sandbox defines __peer__ in the judge child
    try:
        loaded = peer.load()
    except peer.CandidateGone as exc:
        return {"passed": False, "error": str(exc)[:300], "outputs": []}
    if not loaded.get("loaded"):
        return {"passed": False, "error": ("the program does not load: " + str(loaded.get("load_error")))[:300],
                "outputs": []}
    candidate = peer.function(entry_point)
    scope = {"__name__": "__public_tests__", entry_point: candidate}  # a few tests name the function itself
    passed, error, gone = True, "", False
    try:
        exec(compile(tests, filename, "exec"), scope)
        scope["check"](candidate)
    except peer.CandidateGone as exc:
        passed, error, gone = False, str(exc), True
    except peer.CandidateError as exc:  # the program raised under the tests: a failed test
        passed, error = False, exc.describe()
    except AssertionError as exc:
        passed, error = False, ("AssertionError " + str(exc)).strip()
    except Exception as exc:  # e.g. a comparison with a value of the wrong type
        passed, error = False, type(exc).__name__ + ": " + str(exc)
    outputs = []
    for args in probes:
        if gone:  # the program's process is gone: no probe can be answered any more
            outputs.append("no answer")
            continue
        try:
            outputs.append(repr(candidate(*args)))
        except peer.CandidateError as exc:  # the behaviour on a probe includes how the program fails
            outputs.append("raises " + exc.type_name)
        except peer.CandidateGone:
            gone = True
            outputs.append("no answer")
    return {"passed": passed, "error": error[:300], "outputs": outputs}
