#!/usr/bin/env bash
# The one test command: prepare the host, build, run every test of the workspace.
# The namespace integration tests need root; each busy-polls a core, so they run serially.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -d $HOME/.cargo/bin && :$PATH: != *":$HOME/.cargo/bin:"* ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

if [[ $(id -u) -eq 0 ]]; then
    scripts/setup-host.sh
else
    echo "test.sh: not root: skipping host setup; namespace tests will skip (or fail if CI is set)" >&2
fi

cargo build --release
cargo test --release --workspace -- --test-threads=1
# The fuzz crate is a workspace of its own (fuzz/README.md): its unit tests,
# then each fuzz target for a few seconds from its seeds.
(cd fuzz && cargo test --release --lib)
fuzz/run.sh smoke 5
docker/test.sh  # sluice in containers, default offloads on (docker/README.md)
