# Sourced by the GPU scripts (gpu.sh, gpu-mnist.sh, gpu-eval.sh): where a bare GPU machine keeps
# the CUDA driver and NVRTC that burn-cuda loads at run time (see ../shared/GPU_NOTES.md).
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}:/usr/local/nvidia/lib64:/usr/local/cuda/targets/x86_64-linux/lib:$(ls -d /usr/local/cuda-*/targets/x86_64-linux/lib 2>/dev/null | tr '\n' ':')"
