// dC/db^(l) = (1/n) sum over the rows of Delta^(l) (MATH.md, averaging), in one reduction
// written straight into the gradient buffer. (dC/dW^(l) is a cuBLAS GEMM with alpha = 1/n.)
// Compiled after gpubp_common.cuh.

// out[c] = scale * sum_r Delta[r, c]. Threads along x take adjacent columns (coalesced
// reads), threads along y split the rows; blockDim.x * blockDim.y <= GPUBP_MAX_BLOCK and
// blockDim.y is a power of two. Column tiles are grid-strided over the blocks.
template <typename T>
__global__ void bias_grad(const T* __restrict__ Delta, T* __restrict__ out, const gpubp_index rows,
                          const gpubp_index cols, const T scale) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    const gpubp_index tile = (gpubp_index)blockDim.x * gridDim.x;
    for (gpubp_index c0 = (gpubp_index)blockIdx.x * blockDim.x; c0 < cols; c0 += tile) {
        const gpubp_index c = c0 + threadIdx.x;
        T s = T(0);
        if (c < cols) {
            for (gpubp_index r = threadIdx.y; r < rows; r += blockDim.y) s += Delta[r * cols + c];
        }
        s = gpubp_block_reduce<1>(s, buf, gpubp_sum_op());
        if (threadIdx.y == 0 && c < cols) out[c] = s * scale;
    }
}
