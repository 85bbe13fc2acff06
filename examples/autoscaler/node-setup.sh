#!/usr/bin/env bash
# Example userdata for Ubuntu nodes of raydog.yaml: Python, the client's Ray version and raydog in a venv
# the agent user activates, and redis-server for the head's tag store. Add your own public key for SSH.
set -euo pipefail
apt-get update -q && apt-get install -y -q python3-venv redis-server
systemctl disable --now redis-server || true       # RayDog's head script runs its own, on loopback
AGENT_HOME=/opt/yellowdog/agent
python3 -m venv "$AGENT_HOME/venv"
"$AGENT_HOME/venv/bin/pip" install -q "raydog" "ray[default,client]==2.60.0"
echo "source $AGENT_HOME/venv/bin/activate" >> "$AGENT_HOME/.bashrc"
chown -R yd-agent:yd-agent "$AGENT_HOME/venv"
# mkdir -p $AGENT_HOME/.ssh && echo "ssh-ed25519 AAAA... you@laptop" >> $AGENT_HOME/.ssh/authorized_keys
