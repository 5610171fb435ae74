#!/usr/bin/env bash
# Builds every Chorus example task to WebAssembly (wasm32-wasip1) and puts the
# modules in examples/wasm/.
#
#   examples/build.sh           build and (re)write examples/wasm/*.wasm + SHA256SUMS + TOOLCHAIN
#   examples/build.sh --check   build in a scratch dir and fail if any byte differs
#                               from the committed examples/wasm/*.wasm
#
# Rust guests: rustup's wasm32-wasip1 target when it is installed, otherwise
# Debian's rustc-web (1.96, with the standard library's source), which lets
# cargo build std for wasm32-wasip1 itself (-Zbuild-std; RUSTC_BOOTSTRAP=1
# unlocks that flag on a stable compiler), linked by wasm-ld against wasi-libc:
#   apt-get install -y rustc-web cargo-web rust-web-src lld wasi-libc
# /usr/bin/cargo and /usr/bin/rustc are then Debian's; the cargo on PATH
# stays rustup's for everything else.
# C guest: apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32
#
# Builds are reproducible: every absolute path that could land in a module is
# remapped (--remap-path-prefix, -ffile-prefix-map), debug info and symbols are
# stripped, one codegen unit (the `guest` profile in the top-level Cargo.toml).
# The guests are members of the top-level workspace, so cargo hashes every
# path crate relative to one root and the clone's location cannot change a
# byte. The bytes still depend on the compiler, so the toolchain is recorded
# in examples/wasm/TOOLCHAIN and --check says so when the local one differs.
# CHORUS_WASM_TOOLCHAIN=debian|rustup forces a route.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
wasm_dir="$here/wasm"
rust_tasks=(mandelbrot montecarlo primes wasi-probe)

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if [[ $check == 1 ]]; then
  out_dir="$(mktemp -d)"
  trap 'rm -rf "$out_dir"' EXIT
else
  out_dir="$wasm_dir"
  mkdir -p "$out_dir"
fi

cargo_home="${CARGO_HOME:-$HOME/.cargo}"
# wasm SIMD (simd128) is deterministic under the node's NaN canonicalization;
# relaxed SIMD stays off.
flags_common=(
  -C target-feature=+simd128
  "--remap-path-prefix=$repo=/chorus"
  "--remap-path-prefix=$cargo_home=/cargo"
)

# --- Rust guests -------------------------------------------------------------
# CHORUS_WASM_TOOLCHAIN=debian|rustup forces a route (e.g. CI checking bytes
# built with the recorded toolchain on a machine that also has rustup's target).
want="${CHORUS_WASM_TOOLCHAIN:-}"
if [[ "$want" != "debian" ]] && command -v rustup >/dev/null 2>&1 &&
   rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  route="rustup"
  rustc_bin="$(rustup which rustc)"
  cargo_cmd=(cargo build)
  flags=("${flags_common[@]}" "--remap-path-prefix=$("$rustc_bin" --print sysroot)=/rustc")
  env_vars=()
elif [[ "$want" != "rustup" && -x /usr/bin/rustc && -d /usr/lib/rustlib/src/rust/library &&
        -d /usr/lib/wasm32-wasi ]]; then
  route="debian"
  rustc_bin=/usr/bin/rustc
  cargo_cmd=(/usr/bin/cargo build -Zbuild-std=std,panic_abort)
  flags=("${flags_common[@]}" "--remap-path-prefix=/usr/lib/rustlib/src/rust=/rustc/src"
    -C link-self-contained=no -L /usr/lib/wasm32-wasi
    -C link-arg=/usr/lib/wasm32-wasi/crt1-command.o)
  env_vars=(RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld)
elif [[ "$want" == "rustup" ]]; then
  echo "build.sh: CHORUS_WASM_TOOLCHAIN=rustup but rustup has no wasm32-wasip1 target" >&2
  exit 1
else
  echo "build.sh: no wasm32-wasip1 Rust toolchain: run 'rustup target add wasm32-wasip1'," >&2
  echo "  or 'apt-get install -y rustc-web cargo-web rust-web-src lld wasi-libc'" >&2
  exit 1
fi

# Every path crate must lie under the workspace root: cargo hashes one outside
# it by its absolute path, and then the clone's location changes the bytes.
metadata="$(cd "$repo" && cargo metadata --locked --format-version 1)"
outside="$(grep -o '"manifest_path":"[^"]*"' <<<"$metadata" | cut -d'"' -f4 |
  grep -v -e "^$repo/" -e "^$cargo_home/registry/" -e "^$cargo_home/git/" || true)"
if [[ -n "$outside" ]]; then
  echo "build.sh: crates outside the workspace root would make the modules depend on the clone's path:" >&2
  printf '  %s\n' $outside >&2
  exit 1
fi

encoded="$(printf '%s\x1f' "${flags[@]}")"
encoded="${encoded%$'\x1f'}"
echo "build.sh: Rust guests with $("$rustc_bin" -V) ($route)" >&2
# The bytes depend on more than the sources: CARGO_INCREMENTAL=1, a
# RUSTC_WRAPPER or CARGO_PROFILE_* in the caller's environment each change
# them. So cargo runs with a clean environment: only PATH, HOME and
# CARGO_HOME pass through.
clean_env=(env -i "PATH=$PATH" "HOME=${HOME:-/root}" "CARGO_HOME=$cargo_home"
  CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never LC_ALL=C)
# examples/target, not the top-level target/: another cargo and other flags
# would only evict each other's artifacts.
(
  cd "$repo"
  "${clean_env[@]}" ${env_vars[@]+"${env_vars[@]}"} CARGO_ENCODED_RUSTFLAGS="$encoded" \
    CARGO_TARGET_DIR="$here/target" SOURCE_DATE_EPOCH=0 \
    "${cargo_cmd[@]}" --locked --profile guest --target wasm32-wasip1 \
    $(printf -- '-p %s ' "${rust_tasks[@]}")
)
for t in "${rust_tasks[@]}"; do
  cp "$here/target/wasm32-wasip1/guest/$t.wasm" "$out_dir/$t.wasm"
done

# --- C guest ------------------------------------------------------------------
if ! command -v clang >/dev/null 2>&1; then
  echo "build.sh: clang missing: apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32" >&2
  exit 1
fi
echo "build.sh: C guest with $(clang --version | head -n1)" >&2
clang --target=wasm32-wasi -O2 -msimd128 -ffile-prefix-map="$here=/chorus/examples" \
  -Wl,--strip-all -o "$out_dir/collatz.wasm" "$here/collatz-c/collatz.c"

# --- record or compare -----------------------------------------------------------
toolchain="$( "$rustc_bin" -V; clang --version | head -n1;
  if command -v dpkg-query >/dev/null 2>&1; then
    dpkg-query -W -f='wasi-libc ${Version}\n' wasi-libc 2>/dev/null || true
  fi )"
sums="$(cd "$out_dir" && sha256sum mandelbrot.wasm montecarlo.wasm primes.wasm wasi-probe.wasm collatz.wasm)"

if [[ $check == 0 ]]; then
  printf '%s\n' "$sums" >"$wasm_dir/SHA256SUMS"
  printf '%s\n' "$toolchain" >"$wasm_dir/TOOLCHAIN"
  printf '%s\n' "$sums" >&2
  exit 0
fi

if [[ "$toolchain" != "$(cat "$wasm_dir/TOOLCHAIN")" ]]; then
  echo "build.sh --check: toolchain differs from the one recorded in examples/wasm/TOOLCHAIN:" >&2
  diff <(cat "$wasm_dir/TOOLCHAIN") <(printf '%s\n' "$toolchain") >&2 || true
fi
if [[ "$sums" == "$(cat "$wasm_dir/SHA256SUMS")" ]] &&
   (cd "$wasm_dir" && sha256sum --quiet -c SHA256SUMS); then
  echo "build.sh --check: all example modules are byte-identical to the committed ones" >&2
  exit 0
fi
echo "build.sh --check: rebuilt modules differ from the committed ones:" >&2
diff <(cat "$wasm_dir/SHA256SUMS") <(printf '%s\n' "$sums") >&2 || true
# What could explain it: sizes, and the cargo configuration cargo may read.
(cd "$out_dir" && wc -c ./*.wasm) >&2
(cd "$wasm_dir" && wc -c ./*.wasm) >&2
env | grep -E '^(CARGO|RUST)' | sed 's/^/build.sh --check: env /' >&2 || true
d="$here"
while :; do
  for f in "$d/.cargo/config.toml" "$d/.cargo/config"; do
    [[ -f "$f" ]] && { echo "build.sh --check: cargo reads $f:" >&2; sed 's/^/  /' "$f" >&2; }
  done
  [[ "$d" == / ]] && break
  d="$(dirname "$d")"
done
for f in "$cargo_home/config.toml" "$cargo_home/config"; do
  [[ -f "$f" ]] && { echo "build.sh --check: cargo reads $f:" >&2; sed 's/^/  /' "$f" >&2; }
done
exit 1
