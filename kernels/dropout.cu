// Dropout (MATH.md, Dropout): fused into the activation pass it follows (the forward's
// A = g(Z) and D = A m / (1 - p) in one pass, the backward's Delta = (dA m / (1 - p)) g'(Z) in
// one), or on its own. m is computed where it is used, from the counter-based generator of
// gpubp_common.cuh (gpubp_keep): no mask array, no generator state on the device.
// Compiled after gpubp_common.cuh and the generated activation functors.

template <typename T, typename Act>
__global__ void bias_act_dropout_forward(T* Z, const T* __restrict__ b, T* A, T* D, const gpubp_index rows,
                                         const gpubp_index cols, GPUBP_DROPOUT_PARAMS) {
    gpubp_forward_body<T, Act, true, true>(Z, b, A, D, rows, cols, GPUBP_DROPOUT_ARGS);
}

template <typename T, typename Act>
__global__ void act_dropout_forward(T* Z, T* A, T* D, const gpubp_index rows, const gpubp_index cols,
                                    GPUBP_DROPOUT_PARAMS) {
    gpubp_forward_body<T, Act, false, true>(Z, (const T*)0, A, D, rows, cols, GPUBP_DROPOUT_ARGS);
}

// The same below a dropout: dA is the signal at the dropped output, so
// Delta = (dA * m / (1 - p)) * g'(Z), with the forward pass's m drawn again. Delta may be dA.
template <typename T, typename Act>
__global__ void act_dropout_backward(const T* dA, const T* __restrict__ Z, const T* __restrict__ A, T* Delta,
                                     const gpubp_index size, GPUBP_DROPOUT_PARAMS) {
    for (gpubp_index i = GPUBP_FLAT_START; i < size; i += GPUBP_FLAT_STRIDE) {
        const T d = dA[i] * gpubp_keep<T>(p, scale, seed, stream, call, (unsigned long long)(offset + i));
        Delta[i] = d * Act::grad(Z[i], A[i]);
    }
}

// A dropout on its own (after a layer without an activation, on the inputs, after another
// dropout): out = X * m / (1 - p) forward, out = dY * m / (1 - p) backward (out may be dY).
template <typename T>
__global__ void dropout_forward(const T* X, T* out, const gpubp_index size, GPUBP_DROPOUT_PARAMS) {
    for (gpubp_index i = GPUBP_FLAT_START; i < size; i += GPUBP_FLAT_STRIDE) {
        out[i] = X[i] * gpubp_keep<T>(p, scale, seed, stream, call, (unsigned long long)(offset + i));
    }
}

template <typename T>
__global__ void dropout_backward(const T* dY, T* out, const gpubp_index size, GPUBP_DROPOUT_PARAMS) {
    for (gpubp_index i = GPUBP_FLAT_START; i < size; i += GPUBP_FLAT_STRIDE) {
        out[i] = dY[i] * gpubp_keep<T>(p, scale, seed, stream, call, (unsigned long long)(offset + i));
    }
}

