#!/bin/bash
# The user's boot step of the seed: project dir and venv on the volume, `jupyter` installed with
# pip when absent (the first boot), then Jupyter on the private address.
set -e
cd ~
mkdir -p project-venv
if [ ! -f project-venv/pyvenv.cfg ]; then
    echo "post-initialization: creating the venv"
    python3 -m venv project-venv
fi
source project-venv/bin/activate
mkdir -p project
cd project
if pip show jupyter >/dev/null 2>&1; then
    echo "post-initialization: jupyter is installed"
else
    echo "post-initialization: installing jupyter"
    pip install jupyter
fi
# Fly sets FLY_PRIVATE_IP; elsewhere (bench/run.py) the container's own address stands in.
echo "post-initialization: starting Jupyter"
exec jupyter notebook --ip "${FLY_PRIVATE_IP:-$(hostname -i)}" --no-browser
