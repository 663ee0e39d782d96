// dC/db^(l) = (1/n) sum over the rows of Delta^(l) (MATH.md, averaging), written straight into
// the gradient buffer. (dC/dW^(l) is a cuBLAS GEMM with alpha = 1/n.) The same reduction gives
// C = (1/n) sum_i C_0^(i) from the per-sample losses. Compiled after gpubp_common.cuh.

// out[k * cols + c] = scale * sum of Delta[r, c] over the rows r of chunk k, k < chunks: the
// rows split into `chunks` consecutive chunks of ceil(rows / chunks) rows each.
//
// chunks = 1 is the whole reduction in one launch. For a tall Delta (few column tiles, many
// rows) the launcher splits the rows so that every multiprocessor gets blocks: a first launch
// writes the (chunks, cols) partial sums with scale 1, and a second launch of this kernel on
// those partial sums (rows = chunks, chunks = 1) adds them up and scales. Both passes sum in
// a fixed order: the result is deterministic, with no atomics.
//
// Threads along x take adjacent columns (coalesced reads), threads along y split a chunk's
// rows; blockDim.x * blockDim.y <= GPUBP_MAX_BLOCK and blockDim.y is a power of two. Blocks
// stride over column tiles along x and over chunks along y, so any grid covers any shape.
template <typename T>
__global__ void bias_grad(const T* __restrict__ Delta, T* __restrict__ out, const gpubp_index rows,
                          const gpubp_index cols, const gpubp_index chunks, const T scale) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    const gpubp_index per = (rows + chunks - 1) / chunks;
    const gpubp_index tile = (gpubp_index)blockDim.x * gridDim.x;
    for (gpubp_index k = blockIdx.y; k < chunks; k += gridDim.y) {
        const gpubp_index r0 = k * per;
        const gpubp_index r1 = r0 + per < rows ? r0 + per : rows;
        for (gpubp_index c0 = (gpubp_index)blockIdx.x * blockDim.x; c0 < cols; c0 += tile) {
            const gpubp_index c = c0 + threadIdx.x;
            T s = T(0);
            if (c < cols) {
                for (gpubp_index r = r0 + threadIdx.y; r < r1; r += blockDim.y) s += Delta[r * cols + c];
            }
            s = gpubp_block_reduce<1>(s, buf, gpubp_sum_op());
            if (threadIdx.y == 0 && c < cols) out[k * cols + c] = s * scale;
        }
    }
}
