"""The exe-unit's public surface is chosen on purpose (trio's habit): this pins it."""

import exeunit


def test_public_names_are_pinned() -> None:
    assert sorted(exeunit.__all__) == sorted([
        "Activity", "Batch", "Command", "ContainerLimits", "ContainerSpec", "Deploy", "Event", "ExecResult",
        "ExeUnitError", "IllegalTransition", "ImageError", "Run", "Runtime", "RuntimeFailure", "ScriptError",
        "Sha256Sink", "Start", "State", "Terminate", "TransferIn", "TransferOut", "Usage", "container_path",
        "limits_from_agreement", "narrow", "parse_script", "script_to_wire", "sha256_file",
    ])
    for name in exeunit.__all__:
        assert getattr(exeunit, name) is not None


def test_importing_the_package_does_not_need_docker() -> None:
    import subprocess
    import sys

    code = "import sys; sys.modules['docker'] = None; import exeunit; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
