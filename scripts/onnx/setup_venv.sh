#!/usr/bin/env bash
# Creates .venv-onnx/ (ignored by git) with onnx, onnxruntime and numpy for the ONNX export
# tests, when it is missing or incomplete; a no-op otherwise. Never installs PyTorch.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-onnx
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import onnx, onnxruntime, numpy" 2>/dev/null; then
  exit 0
fi
echo "setup: creating $venv with onnx, onnxruntime, numpy (PyPI)" >&2
python=python3
[ -x /usr/bin/python3 ] && python=/usr/bin/python3
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check onnx onnxruntime numpy
"$venv/bin/python" -c "import onnx, onnxruntime; print('setup: onnx', onnx.__version__, 'onnxruntime', onnxruntime.__version__)" >&2
