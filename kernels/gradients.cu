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

// ---- gradient clipping (torch.nn.utils.clip_grad_norm_) over the flat gradient buffer ------
// ||g|| = sqrt(sum_w g_w^2) and g <- g min(1, max_norm / (||g|| + 1e-6)) in three launches
// and without a synchronisation with the host: one pass reads the buffer for partial sums,
// one block turns them into the norm and the factor, and a second pass scales the buffer
// only where the factor is below 1 (NaN included, which spreads as in PyTorch).

// partial[r] = sum of x[i]^2 over chunk r (elements r cols .. r cols + cols - 1, the last one
// shorter) of the rows = ceil(size / cols) chunks: a block per chunk, its threads along it.
template <typename T>
__global__ void grad_sq_norm_parts(const T* __restrict__ x, T* __restrict__ partial, const gpubp_index size,
                                   const gpubp_index rows, const gpubp_index cols) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    for (gpubp_index r = blockIdx.x; r < rows; r += gridDim.x) {
        const gpubp_index begin = r * cols;
        const gpubp_index end = begin + cols < size ? begin + cols : size;
        T s = T(0);
        for (gpubp_index i = begin + threadIdx.x; i < end; i += blockDim.x) {
            const T v = x[i];
            s += v * v;
        }
        s = gpubp_block_reduce<0>(s, buf, gpubp_sum_op());
        if (threadIdx.x == 0) partial[r] = s;
    }
}

// clip[0] = ||g|| = sqrt(sum of the cols partial sums), clip[1] = min(1, max_norm / (||g|| + 1e-6))
// (NaN stays NaN). One block (rows = 1).
template <typename T>
__global__ void grad_clip_factor(const T* __restrict__ partial, T* __restrict__ clip, const gpubp_index rows,
                                 const gpubp_index cols, const T max_norm) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    for (gpubp_index r = blockIdx.x; r < rows; r += gridDim.x) {
        T s = T(0);
        for (gpubp_index c = threadIdx.x; c < cols; c += blockDim.x) s += partial[r * cols + c];
        s = gpubp_block_reduce<0>(s, buf, gpubp_sum_op());
        if (threadIdx.x == 0) {
            const T norm = sqrt(s);
            const T coef = max_norm / (norm + T(1e-6));
            clip[0] = norm;
            clip[1] = coef < T(1) || coef != coef ? coef : T(1);
        }
    }
}

// x <- x clip[1], skipped (nothing written) where the factor is exactly 1.
template <typename T>
__global__ void grad_scale(T* __restrict__ x, const T* __restrict__ clip, const gpubp_index size) {
    const T coef = clip[1];
    if (coef == T(1)) return;
    for (gpubp_index i = GPUBP_FLAT_START; i < size; i += GPUBP_FLAT_STRIDE) x[i] = x[i] * coef;
}
