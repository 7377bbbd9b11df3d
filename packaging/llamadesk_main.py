"""The bundled app's entry point (PyInstaller runs this file as __main__).

A frozen app has no Python interpreter to start children with, so its own executable stands in:
- multiprocessing's spawned children (the engine worker, the RPC server) are recognised by
  freeze_support(), which runs the child's work and exits;
- `<executable> -m MODULE ...` (how core starts short-lived helpers such as the dry run, through
  sys.executable) runs that module as __main__, as `python -m` would.
Everything else is the GUI: desktop.app.main.
"""
import multiprocessing
import runpy
import sys


def run_module_like_python(argv: list[str]) -> None:
    module = argv[1]
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    multiprocessing.freeze_support()
    if len(sys.argv) >= 3 and sys.argv[1] == "-m":
        run_module_like_python(sys.argv[1:])
        sys.exit(0)
    from desktop.app import main

    sys.exit(main())
