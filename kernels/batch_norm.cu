// Batch normalisation over the rows of each column (MATH.md, BatchNorm), as row reductions:
// the statistics and the backward pass's two sums are per-column sums over the n rows (threads
// along x take adjacent columns, threads along y split the rows, and for a tall batch blocks
// along y split them into `chunks`, as bias_grad: partial sums per chunk, which a second pass,
// bias_grad itself, adds up; deterministic either way); the normalisation, the affine step, the
// activation (and a dropout after it) are one flat pass. Compiled after gpubp_common.cuh and the
// generated activation functors.

// s1[c] = sum_r (X[r, c] - K[c]), s2[c] = sum_r (X[r, c] - K[c])^2 for the shift K (the previous
// batch's mean); s1 and s2 are views of one buffer, so a distributed step reduces both at once.
// With chunks > 1, s1[k cols + c] and s2[k cols + c] hold the sums over the rows of chunk k.
template <typename T>
__global__ void bn_sums(const T* __restrict__ X, const T* __restrict__ shift, T* s1, T* s2,
                        const gpubp_index rows, const gpubp_index cols, const gpubp_index chunks) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    const gpubp_index per = (rows + chunks - 1) / chunks;
    const gpubp_index tile = (gpubp_index)blockDim.x * gridDim.x;
    for (gpubp_index k = blockIdx.y; k < chunks; k += gridDim.y) {
        const gpubp_index r0 = k * per;
        const gpubp_index r1 = r0 + per < rows ? r0 + per : rows;
        for (gpubp_index c0 = (gpubp_index)blockIdx.x * blockDim.x; c0 < cols; c0 += tile) {
            const gpubp_index c = c0 + threadIdx.x;
            T a = T(0), q = T(0);
            if (c < cols) {
                const T K = shift[c];
                for (gpubp_index r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
                    const T d = X[r * cols + c] - K;
                    a += d;
                    q += d * d;
                }
            }
            a = gpubp_block_reduce<1>(a, buf, gpubp_sum_op());
            q = gpubp_block_reduce<1>(q, buf, gpubp_sum_op());
            if (threadIdx.y == 0 && c < cols) {
                s1[k * cols + c] = a;
                s2[k * cols + c] = q;
            }
        }
    }
}

// Per column: in training, mu = K + s1/N and sigma^2 = max(s2/N - (s1/N)^2, 0) from the sums over
// the N rows (shift may be the same array as mean: each thread reads its K before writing), the
// running statistics updated when `update` (momentum, N/(N-1) sigma^2); in inference the running
// statistics. Then inv_std = 1 / sqrt(sigma^2 + eps).
template <typename T>
__global__ void bn_stats(const T* s1, const T* s2, const T* shift, T* running_mean, T* running_var, T* mean,
                         T* inv_std, const gpubp_index cols, const T count, const T momentum, const T eps,
                         const int training, const int update) {
    for (gpubp_index c = GPUBP_FLAT_START; c < cols; c += GPUBP_FLAT_STRIDE) {
        T mu, var;
        if (training) {
            const T m1 = s1[c] * (T(1) / count);
            const T m2 = s2[c] * (T(1) / count);
            const T v = m2 - m1 * m1;
            var = v < T(0) ? T(0) : v;  // NaN stays NaN
            mu = m1 + shift[c];
            if (update) {
                const T unbiased = count > T(1) ? count / (count - T(1)) : T(1);
                running_var[c] = running_var[c] * (T(1) - momentum) + var * (momentum * unbiased);
                running_mean[c] = running_mean[c] * (T(1) - momentum) + mu * momentum;
            }
        } else {
            mu = running_mean[c];
            var = running_var[c];
        }
        mean[c] = mu;
        inv_std[c] = T(1) / sqrt(var + eps);
    }
}

// zhat = (X - mu) inv_std into Xhat, y = gamma zhat + beta into Y, a = g(y) into A (A may be Y,
// with the identity), and when Drop the dropout after the activation into D.
template <typename T, typename Act, bool Drop>
__device__ __forceinline__ void gpubp_bn_forward_body(const T* __restrict__ X, const T* __restrict__ mean,
                                                      const T* __restrict__ inv_std, const T* __restrict__ gamma,
                                                      const T* __restrict__ beta, T* Xhat, T* Y, T* A, T* D,
                                                      const gpubp_index rows, const gpubp_index cols,
                                                      GPUBP_DROPOUT_PARAMS) {
    const gpubp_index size = rows * cols;
    const gpubp_index stride = GPUBP_FLAT_STRIDE;
    gpubp_index i = GPUBP_FLAT_START;
    gpubp_index col = cols > 0 ? i % cols : 0;
    const gpubp_index col_step = cols > 0 ? stride % cols : 0;
    for (; i < size; i += stride) {
        const T xh = (X[i] - mean[col]) * inv_std[col];
        const T y = xh * gamma[col] + beta[col];
        Xhat[i] = xh;
        Y[i] = y;
        const T a = Act::forward(y);
        A[i] = a;
        if (Drop) D[i] = a * gpubp_keep<T>(p, scale, seed, stream, call, (unsigned long long)(offset + i));
        col += col_step;
        if (col >= cols) col -= cols;
    }
}

template <typename T, typename Act>
__global__ void bn_forward(const T* __restrict__ X, const T* __restrict__ mean, const T* __restrict__ inv_std,
                           const T* __restrict__ gamma, const T* __restrict__ beta, T* Xhat, T* Y, T* A,
                           const gpubp_index rows, const gpubp_index cols) {
    gpubp_bn_forward_body<T, Act, false>(X, mean, inv_std, gamma, beta, Xhat, Y, A, (T*)0, rows, cols, T(0), T(1),
                                         0, 0, 0, 0);
}

template <typename T, typename Act>
__global__ void bn_dropout_forward(const T* __restrict__ X, const T* __restrict__ mean,
                                   const T* __restrict__ inv_std, const T* __restrict__ gamma,
                                   const T* __restrict__ beta, T* Xhat, T* Y, T* A, T* D, const gpubp_index rows,
                                   const gpubp_index cols, GPUBP_DROPOUT_PARAMS) {
    gpubp_bn_forward_body<T, Act, true>(X, mean, inv_std, gamma, beta, Xhat, Y, A, D, rows, cols,
                                        GPUBP_DROPOUT_ARGS);
}

// The backward pass's sums, with the activation's derivative (and the dropout's mask) applied on
// the way: Delta = dA * g'(y) written back over dA, s1[c] = sum_r Delta[r, c] and
// s2[c] = sum_r Delta[r, c] zhat[r, c]; with chunks > 1, per chunk of rows as bn_sums.
template <typename T, typename Act, bool Drop>
__device__ __forceinline__ void gpubp_bn_backward_sums_body(T* dA, const T* __restrict__ Y, const T* __restrict__ A,
                                                            const T* __restrict__ Xhat, T* s1, T* s2,
                                                            const gpubp_index rows, const gpubp_index cols,
                                                            const gpubp_index chunks, GPUBP_DROPOUT_PARAMS) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    const gpubp_index per = (rows + chunks - 1) / chunks;
    const gpubp_index tile = (gpubp_index)blockDim.x * gridDim.x;
    for (gpubp_index k = blockIdx.y; k < chunks; k += gridDim.y) {
        const gpubp_index r0 = k * per;
        const gpubp_index r1 = r0 + per < rows ? r0 + per : rows;
        for (gpubp_index c0 = (gpubp_index)blockIdx.x * blockDim.x; c0 < cols; c0 += tile) {
            const gpubp_index c = c0 + threadIdx.x;
            T a = T(0), q = T(0);
            if (c < cols) {
                for (gpubp_index r = r0 + threadIdx.y; r < r1; r += blockDim.y) {
                    const gpubp_index i = r * cols + c;
                    T d = dA[i];
                    if (Drop) d = d * gpubp_keep<T>(p, scale, seed, stream, call, (unsigned long long)(offset + i));
                    d = d * Act::grad(Y[i], A[i]);
                    dA[i] = d;
                    a += d;
                    q += d * Xhat[i];
                }
            }
            a = gpubp_block_reduce<1>(a, buf, gpubp_sum_op());
            q = gpubp_block_reduce<1>(q, buf, gpubp_sum_op());
            if (threadIdx.y == 0 && c < cols) {
                s1[k * cols + c] = a;
                s2[k * cols + c] = q;
            }
        }
    }
}

template <typename T, typename Act>
__global__ void bn_backward_sums(T* dA, const T* __restrict__ Y, const T* __restrict__ A, const T* __restrict__ Xhat,
                                 T* s1, T* s2, const gpubp_index rows, const gpubp_index cols,
                                 const gpubp_index chunks) {
    gpubp_bn_backward_sums_body<T, Act, false>(dA, Y, A, Xhat, s1, s2, rows, cols, chunks, T(0), T(1), 0, 0, 0, 0);
}

template <typename T, typename Act>
__global__ void bn_dropout_backward_sums(T* dA, const T* __restrict__ Y, const T* __restrict__ A,
                                         const T* __restrict__ Xhat, T* s1, T* s2, const gpubp_index rows,
                                         const gpubp_index cols, const gpubp_index chunks, GPUBP_DROPOUT_PARAMS) {
    gpubp_bn_backward_sums_body<T, Act, true>(dA, Y, A, Xhat, s1, s2, rows, cols, chunks, GPUBP_DROPOUT_ARGS);
}

// dC/dbeta = s1 / N and dC/dgamma = s2 / N, straight into the flat gradient buffer.
template <typename T>
__global__ void bn_param_grads(const T* __restrict__ s1, const T* __restrict__ s2, T* dgamma, T* dbeta,
                               const gpubp_index cols, const T count) {
    for (gpubp_index c = GPUBP_FLAT_START; c < cols; c += GPUBP_FLAT_STRIDE) {
        dbeta[c] = s1[c] * (T(1) / count);
        dgamma[c] = s2[c] * (T(1) / count);
    }
}

// The signal at the input: (gamma inv_std) (Delta - dC/dbeta - zhat dC/dgamma) in training, where
// every sample moved mu and sigma, (gamma inv_std) Delta in inference.
template <typename T>
__global__ void bn_backward(const T* __restrict__ Delta, const T* __restrict__ Xhat, const T* __restrict__ dgamma,
                            const T* __restrict__ dbeta, const T* __restrict__ gamma, const T* __restrict__ inv_std,
                            T* out, const gpubp_index rows, const gpubp_index cols, const int training) {
    const gpubp_index size = rows * cols;
    const gpubp_index stride = GPUBP_FLAT_STRIDE;
    gpubp_index i = GPUBP_FLAT_START;
    gpubp_index col = cols > 0 ? i % cols : 0;
    const gpubp_index col_step = cols > 0 ? stride % cols : 0;
    for (; i < size; i += stride) {
        const T coef = gamma[col] * inv_std[col];
        const T d = training ? (Delta[i] - dbeta[col]) - Xhat[i] * dgamma[col] : Delta[i];
        out[i] = d * coef;
        col += col_step;
        if (col >= cols) col -= cols;
    }
}
