#!/usr/bin/env bash
# Builds a self-contained bundle of the processor for a GPU machine that has an NVIDIA driver and the
# CUDA + cuDNN user-space libraries, but no .NET and no package registry:
#
#   deploy/gpu/bundle.sh [--flavor Gpu|Cpu] [--out artifacts/gpu-bundle] [--native-dir DIR]
#
#   --flavor Gpu  (default, as for any linux-x64 build) references Microsoft.ML.OnnxRuntime.Gpu.Linux:
#                 ONNX Runtime built with the CUDA execution provider (libonnxruntime_providers_cuda.so;
#                 CUDA 13 + cuDNN 9 user-space libraries on the target's library path).
#   --flavor Cpu  the CPU package: the same bundle for CPU-only machines (and a check of this script
#                 where the Gpu package cannot be restored).
#   --native-dir  copy these ONNX Runtime native libraries over the published ones (for a provider
#                 build obtained elsewhere; its version must match the managed package's API).
#
# Result: <out>/streaminference-linux-x64/ (self-contained publish: run ./streaminference, no .NET
# needed) and <out>/streaminference-linux-x64.tar.xz. On the GPU machine:
#
#   tar -xJf streaminference-linux-x64.tar.xz && cd streaminference-linux-x64
#   export LD_LIBRARY_PATH=<CUDA and cuDNN lib folders>:$LD_LIBRARY_PATH
#   ./streaminference train --architecture wide-mlp --out data/models/fraud-mlp/1   # needs data/training.parquet:
#   ./streaminference dev history && ./streaminference backfill                      #   (these two make it)
#   ./streaminference bench model --model data/models/fraud-mlp/1 --device cuda --output docs/model-benchmarks
#   (docs/model-benchmarks.json ships with the bundle: copy it back to keep the CPU and GPU runs together)
set -euo pipefail
script="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"

flavor=Gpu
out=artifacts/gpu-bundle
native=""
while [ $# -gt 0 ]; do
  case "$1" in
    --flavor) flavor="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --native-dir) native="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$script"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$flavor" in Gpu|Cpu) ;; *) echo "--flavor must be Gpu or Cpu (was '$flavor')" >&2; exit 2 ;; esac
if [ -n "$native" ]; then
  [ -d "$native" ] || { echo "--native-dir '$native' is not a directory" >&2; exit 2; }
  compgen -G "$native/libonnxruntime*.so*" > /dev/null || { echo "--native-dir '$native' holds no libonnxruntime*.so" >&2; exit 2; }
  native="$(cd "$native" && pwd)"
fi
# Paths given relative to where the script was called from; then work from the repository root.
mkdir -p "$out" && out="$(cd "$out" && pwd)"
cd "$(dirname "$script")/../.."
# However this ends, leave the repository's own build restored for itself (no runtime, default flavor).
trap 'dotnet restore src/StreamInference/StreamInference.csproj > /dev/null 2>&1 || true' EXIT

name=streaminference-linux-x64
dir="$out/$name"
rm -rf "$dir"

echo "== restore ($flavor flavor of ONNX Runtime)"
if ! dotnet restore src/StreamInference/StreamInference.csproj -r linux-x64 -p:SelfContained=true -p:OnnxRuntimeFlavor="$flavor"; then
  if [ "$flavor" = Gpu ]; then
    echo "Microsoft.ML.OnnxRuntime.Gpu.Linux could not be restored: check the package sources," >&2
    echo "or use --flavor Cpu with --native-dir pointing at a CUDA-enabled ONNX Runtime build." >&2
  fi
  exit 1
fi
echo "== publish (self-contained, linux-x64)"
dotnet publish src/StreamInference/StreamInference.csproj -c Release -r linux-x64 -p:SelfContained=true \
  -p:OnnxRuntimeFlavor="$flavor" --no-restore -o "$dir"
# Earlier results travel with the bundle, so a run there merges into the same file (copy it back).
mkdir -p "$dir/docs"
cp docs/model-benchmarks.json "$dir/docs/" 2>/dev/null || true

# glibc only: the musl build of librdkafka is dead weight in this bundle.
rm -f "$dir/alpine-librdkafka.so"

if [ -n "$native" ]; then
  echo "== native ONNX Runtime libraries from $native"
  cp -v "$native"/libonnxruntime*.so* "$dir"/
fi

echo "== contents"
ls -1 "$dir" | grep -E '^libonnxruntime|^librdkafka|^streaminference$' | sed 's/^/  /'
if [ "$flavor" = Gpu ] && [ ! -e "$dir/libonnxruntime_providers_cuda.so" ]; then
  echo "warning: no libonnxruntime_providers_cuda.so in the bundle: Model:Device=cuda will fail at start" >&2
fi

echo "== archive"
tar -C "$out" -cf - "$name" | xz -T0 -6 > "$out/$name.tar.xz"
size=$(stat -c %s "$out/$name.tar.xz")
echo "$out/$name.tar.xz: $((size / 1024 / 1024)) MiB ($(du -sh "$dir" | cut -f1) unpacked)"
