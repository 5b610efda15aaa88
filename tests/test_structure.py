"""The shape the code keeps: the local runtime stands alone, the proxy carries no app glue."""

import subprocess
import sys
import textwrap

WEB_APP_MODULES = ("falweb.pages", "falweb.history", "falweb.history_sync", "falweb.webhooks",
                   "falweb.backend", "falweb.live", "falweb.downloads", "falweb.presentation")


def run_python(code, tmp_path):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_local_runtime_runs_with_nothing_of_the_web_app_loaded(tmp_path):
    # A real job through the runtime's HTTP layer, then a look at what Python loaded.
    code = f"""
        import sys, time
        from falweb.local import create_local_app, runtime_of
        app = create_local_app({{"FALWEB_INSTANCE_PATH": {str(tmp_path)!r},
                                "FALWEB_LOCAL_STEP_DELAY": 0.0}})
        client = app.test_client()
        answer = client.post("/queue/fal-ai/fast-sdxl", json={{"prompt": "alone"}})
        assert answer.status_code == 200, answer.text
        status_url = "/queue/fal-ai/fast-sdxl/requests/" + answer.json["request_id"] + "/status"
        for _ in range(500):
            if client.get(status_url).json["status"] == "COMPLETED":
                break
            time.sleep(0.02)
        else:
            raise SystemExit("the job never completed")
        runtime_of(app).close()
        print(",".join(m for m in {WEB_APP_MODULES!r} if m in sys.modules))
    """
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"the runtime loaded: {done.stdout.strip()}"


def test_the_proxy_extension_imports_nothing_of_the_app(tmp_path):
    done = run_python(f"""
        import sys
        from flask import Flask
        from falweb.proxy import FalProxy
        FalProxy(Flask("other"))
        print(",".join(m for m in {WEB_APP_MODULES!r} if m in sys.modules))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def import_graph(root):
    """``{module: {modules it imports}}`` over ``falweb/``, from every import statement,
    those inside functions too (a lazy import is still a dependency). A module's imports of
    its own ancestor packages are left out: a package's modules may use what its
    ``__init__`` defines, and that is not a circle of design."""
    import ast
    from pathlib import Path

    modules = {}
    for path in (Path(root) / "falweb").rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[name] = {target for target in targets if target in modules and target != name
                       and not name.startswith(target + ".")}
    return graph


def circles(graph):
    """The groups of modules that import each other in a loop (strongly connected)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles():
    # Five came back with one day's merges (runtime <-> hosted apps, storage <-> S3 storage,
    # pages <-> playground, ...): each module's job sits above or below another's, never both.
    import os

    assert circles(import_graph(os.path.dirname(os.path.dirname(__file__)))) == []
