// Output-layer heads (MATH.md, output layer): the loss derivative fused with the activation
// derivative, Delta^(L) = dC_0/dA^(L) * g'(Z^(L)) (not divided by n), and the loss C_0 of
// every sample (row), each in one pass. One block per row (grid-stride over the rows), the
// block's threads striding over the columns. Compiled after gpubp_common.cuh and the
// generated activation functors.

// sse / mse with an elementwise g: Delta = (scale (a - y)) g'(z, a), C_0 = sum (a - y)^2 / div.
// sse: scale = 2, div = 1; mse: scale = 2 / m, div = m (m output nodes).
template <typename T, typename Act>
__global__ void head_squared(const T* __restrict__ Z, const T* __restrict__ A, const T* __restrict__ Y,
                             T* __restrict__ Delta, T* __restrict__ C0, const gpubp_index rows,
                             const gpubp_index cols, const T scale, const T div) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    for (gpubp_index r = blockIdx.x; r < rows; r += gridDim.x) {
        const gpubp_index o = r * cols;
        T s = T(0);
        for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) {
            const T d = A[o + j] - Y[o + j];
            s += d * d;
            Delta[o + j] = (scale * d) * Act::grad(Z[o + j], A[o + j]);
        }
        s = gpubp_block_reduce<0>(s, buf, gpubp_sum_op());
        if (threadIdx.x == 0) C0[r] = s / div;
    }
}

// sse / mse with softmax: dA = scale (a - y), Delta_j = a_j (dA_j - sum_i dA_i a_i).
template <typename T>
__global__ void head_squared_softmax(const T* __restrict__ Z, const T* __restrict__ A, const T* __restrict__ Y,
                                     T* __restrict__ Delta, T* __restrict__ C0, const gpubp_index rows,
                                     const gpubp_index cols, const T scale, const T div) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    for (gpubp_index r = blockIdx.x; r < rows; r += gridDim.x) {
        const gpubp_index o = r * cols;
        T s = T(0), da = T(0);
        for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) {
            const T d = A[o + j] - Y[o + j];
            s += d * d;
            da += (scale * d) * A[o + j];
        }
        s = gpubp_block_reduce<0>(s, buf, gpubp_sum_op());
        da = gpubp_block_reduce<0>(da, buf, gpubp_sum_op());
        for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) {
            Delta[o + j] = A[o + j] * (scale * (A[o + j] - Y[o + j]) - da);
        }
        if (threadIdx.x == 0) C0[r] = s / div;
    }
}

// log sum_j exp(z_j) of one row, stable (max subtracted); every thread gets the result.
template <typename T>
__device__ __forceinline__ T gpubp_row_logsumexp(const T* z, const gpubp_index cols, T* buf) {
    T m = -T(GPUBP_INF);
    for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) m = gpubp_max_op()(m, z[j]);
    m = gpubp_block_reduce<0>(m, buf, gpubp_max_op());
    T s = T(0);
    for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) s += exp(z[j] - m);
    s = gpubp_block_reduce<0>(s, buf, gpubp_sum_op());
    return m + log(s);
}

// cross_entropy with softmax, target rows Y (one-hot or any weights):
// Delta = a sum(y) - y (A - Y for one-hot rows), C_0 = sum(y) logsumexp(z) - sum_j y_j z_j.
template <typename T>
__global__ void head_xent_dense(const T* __restrict__ Z, const T* __restrict__ A, const T* __restrict__ Y,
                                T* __restrict__ Delta, T* __restrict__ C0, const gpubp_index rows,
                                const gpubp_index cols) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    for (gpubp_index r = blockIdx.x; r < rows; r += gridDim.x) {
        const gpubp_index o = r * cols;
        T sy = T(0), syz = T(0);
        for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) {
            sy += Y[o + j];
            syz += Y[o + j] * Z[o + j];
        }
        sy = gpubp_block_reduce<0>(sy, buf, gpubp_sum_op());
        syz = gpubp_block_reduce<0>(syz, buf, gpubp_sum_op());
        const T lse = gpubp_row_logsumexp(Z + o, cols, buf);
        for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) Delta[o + j] = A[o + j] * sy - Y[o + j];
        if (threadIdx.x == 0) C0[r] = sy * lse - syz;
    }
}

// cross_entropy with softmax, integer labels read directly (no one-hot array):
// Delta = A - onehot(label), C_0 = logsumexp(z) - z_label. A label outside [0, cols) makes
// its row's Delta and C_0 NaN instead of reading out of bounds.
template <typename T>
__global__ void head_xent_labels(const T* __restrict__ Z, const T* __restrict__ A,
                                 const long long* __restrict__ labels, T* __restrict__ Delta,
                                 T* __restrict__ C0, const gpubp_index rows, const gpubp_index cols) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    for (gpubp_index r = blockIdx.x; r < rows; r += gridDim.x) {
        const gpubp_index o = r * cols;
        const long long y = labels[r];
        const bool valid = y >= 0 && y < cols;
        const T lse = gpubp_row_logsumexp(Z + o, cols, buf);
        for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) {
            Delta[o + j] = valid ? (j == y ? A[o + j] - T(1) : A[o + j]) : T(GPUBP_NAN);
        }
        if (threadIdx.x == 0) C0[r] = valid ? lse - Z[o + y] : T(GPUBP_NAN);
    }
}

// binary_cross_entropy with sigmoid: Delta = a - y,
// C_0 = sum_j max(z_j, 0) - y_j z_j + log(1 + exp(-|z_j|)) (stable for large |z|).
template <typename T>
__global__ void head_bce(const T* __restrict__ Z, const T* __restrict__ A, const T* __restrict__ Y,
                         T* __restrict__ Delta, T* __restrict__ C0, const gpubp_index rows,
                         const gpubp_index cols) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    for (gpubp_index r = blockIdx.x; r < rows; r += gridDim.x) {
        const gpubp_index o = r * cols;
        T s = T(0);
        for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) {
            const T z = Z[o + j], y = Y[o + j];
            s += gpubp_pos(z) - y * z + log1p(exp(-fabs(z)));
            Delta[o + j] = A[o + j] - y;
        }
        s = gpubp_block_reduce<0>(s, buf, gpubp_sum_op());
        if (threadIdx.x == 0) C0[r] = s;
    }
}
