// Forward and backward of the activations (MATH.md: A = g(Z), Delta = dA * g'(Z)); the forward
// pass is gpubp_forward_body of gpubp_common.cuh, which dropout.cu shares.
// Compiled after gpubp_common.cuh and the generated activation functors (Act below is one
// gpubp_act_<name>).

template <typename T, typename Act>
__global__ void bias_act_forward(T* Z, const T* __restrict__ b, T* A,
                                 const gpubp_index rows, const gpubp_index cols) {
    gpubp_forward_body<T, Act, true, false>(Z, b, A, (T*)0, rows, cols, T(0), T(1), 0, 0, 0, 0);
}

template <typename T, typename Act>
__global__ void act_forward(T* Z, T* A, const gpubp_index rows, const gpubp_index cols) {
    gpubp_forward_body<T, Act, false, false>(Z, (const T*)0, A, (T*)0, rows, cols, T(0), T(1), 0, 0, 0, 0);
}

// Delta = dA * g'(Z) (g' reads Z or A, whichever is cheaper). Delta may be dA (in place).
template <typename T, typename Act>
__global__ void act_backward(const T* dA, const T* __restrict__ Z, const T* __restrict__ A,
                             T* Delta, const gpubp_index size) {
    for (gpubp_index i = GPUBP_FLAT_START; i < size; i += GPUBP_FLAT_STRIDE) {
        Delta[i] = dA[i] * Act::grad(Z[i], A[i]);
    }
}

// Softmax over each row: Z += b (when Bias), A = exp(Z - max) / sum exp(Z - max).
// A NaN anywhere in a row makes the whole row NaN, as in NumPy.
template <typename T, bool Bias>
__device__ __forceinline__ void gpubp_softmax_body(T* Z, const T* __restrict__ b, T* A,
                                                   const gpubp_index rows, const gpubp_index cols) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    for (gpubp_index r = blockIdx.x; r < rows; r += gridDim.x) {
        T* z = Z + r * cols;
        T* a = A + r * cols;
        T m = -T(GPUBP_INF);
        for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) {
            T v = z[j];
            if (Bias) {
                v += b[j];
                z[j] = v;
            }
            m = gpubp_max_op()(m, v);
        }
        m = gpubp_block_reduce<0>(m, buf, gpubp_max_op());
        T s = T(0);
        for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) {
            const T e0 = exp(z[j] - m);
            const T e = e0 < gpubp_tiny<T>() ? T(0) : e0;  // no denormal probabilities (NaN stays)
            a[j] = e;
            s += e;
        }
        s = gpubp_block_reduce<0>(s, buf, gpubp_sum_op());
        for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) a[j] = a[j] / s;
    }
}

template <typename T>
__global__ void bias_softmax_forward(T* Z, const T* __restrict__ b, T* A,
                                     const gpubp_index rows, const gpubp_index cols) {
    gpubp_softmax_body<T, true>(Z, b, A, rows, cols);
}

template <typename T>
__global__ void softmax_forward(T* Z, T* A, const gpubp_index rows, const gpubp_index cols) {
    gpubp_softmax_body<T, false>(Z, (const T*)0, A, rows, cols);
}

// Softmax Jacobian-vector product per row: Delta_j = a_j (dA_j - sum_i dA_i a_i).
// Delta may be dA (in place).
template <typename T>
__global__ void softmax_backward(const T* dA, const T* __restrict__ A, T* Delta,
                                 const gpubp_index rows, const gpubp_index cols) {
    __shared__ T buf[GPUBP_MAX_BLOCK];
    for (gpubp_index r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* d = dA + r * cols;
        const T* a = A + r * cols;
        T s = T(0);
        for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) s += d[j] * a[j];
        s = gpubp_block_reduce<0>(s, buf, gpubp_sum_op());
        T* out = Delta + r * cols;
        for (gpubp_index j = threadIdx.x; j < cols; j += blockDim.x) out[j] = a[j] * (d[j] - s);
    }
}
