// Common definitions for every gpubp kernel source.
//
// Each .cu file of this folder is compiled as: this header, then one functor per activation
// of gpubp/activations.py (struct gpubp_act_<name> with static forward(z) and grad(z, a),
// generated from the table's CUDA bodies), then the .cu file itself. Every kernel is a
// template over the element type T (float or double).
//
// Conventions:
// * sizes and indices are 64-bit (gpubp_index); no kernel assumes small arrays;
// * flat kernels use grid-stride loops, so any grid covers any size (one block of one
//   thread covers the whole array);
// * row kernels give each block whole rows (grid-stride over rows) and stride the block's
//   threads over the columns; blockDim.x is a power of two <= GPUBP_MAX_BLOCK;
// * every helper propagates NaN: comparisons are written so that a NaN operand falls
//   through to the NaN (fmin/fmax would drop it).

// The largest block (threads) a launch uses, sizing the shared reduction buffers; defined by
// the program assembler from gpubp.ops.cuda_kernels.MAX_BLOCK, the one source of this number.
#ifndef GPUBP_MAX_BLOCK
#error "GPUBP_MAX_BLOCK must be defined before this header (gpubp.ops.cuda_kernels.MAX_BLOCK)"
#endif

typedef long long gpubp_index;

// +infinity and a quiet NaN (NVRTC has no INFINITY / NAN macros); convert to T as needed.
#define GPUBP_INF __int_as_float(0x7f800000)
#define GPUBP_NAN __int_as_float(0x7fc00000)

// First flat index of this thread and the stride of the grid-stride loop.
#define GPUBP_FLAT_START ((gpubp_index)blockIdx.x * (gpubp_index)blockDim.x + (gpubp_index)threadIdx.x)
#define GPUBP_FLAT_STRIDE ((gpubp_index)blockDim.x * (gpubp_index)gridDim.x)

// Logistic sigmoid, stable for large |z|: exp(-|z|) never overflows; NaN in, NaN out.
template <typename T>
__device__ __forceinline__ T gpubp_sigmoid(const T z) {
    const T e = exp(-fabs(z));
    return (z >= T(0) ? T(1) : e) / (T(1) + e);
}

// z clipped to [lo, hi]; NaN stays NaN (both comparisons are false for NaN).
template <typename T>
__device__ __forceinline__ T gpubp_clip(const T z, const T lo, const T hi) {
    return z < lo ? lo : (z > hi ? hi : z);
}

// max(x, 0) that keeps NaN (NumPy's maximum(z, 0)).
template <typename T>
__device__ __forceinline__ T gpubp_pos(const T z) {
    return z < T(0) ? T(0) : z;
}

// The smallest normal number of T. Softmax flushes probabilities below it to 0, as the NumPy
// path does: beside the row's largest (exp(0) = 1) they carry nothing.
template <typename T>
__device__ __forceinline__ T gpubp_tiny();
template <>
__device__ __forceinline__ float gpubp_tiny<float>() { return 1.17549435082228751e-38f; }
template <>
__device__ __forceinline__ double gpubp_tiny<double>() { return 2.2250738585072014e-308; }

// Binary operators for gpubp_block_reduce. gpubp_max_op keeps NaN like NumPy's max.
struct gpubp_sum_op {
    template <typename T>
    __device__ __forceinline__ T operator()(const T x, const T y) const { return x + y; }
};

struct gpubp_max_op {
    template <typename T>
    __device__ __forceinline__ T operator()(const T x, const T y) const {
        return (x > y || x != x) ? x : y;
    }
};

// Combine the values v of threadIdx.y * blockDim.x + threadIdx.x over the threads of a block
// along x (Axis = 0) or along y (Axis = 1), with a tree in shared memory. Every thread of
// the block must call it (it synchronises); the dimension reduced over is a power of two.
// All threads return the result of their row (Axis = 0) or column (Axis = 1).
template <int Axis, typename T, typename Op>
__device__ __forceinline__ T gpubp_block_reduce(T v, T* buf, const Op op) {
    const unsigned tx = threadIdx.x, ty = threadIdx.y, nx = blockDim.x;
    const unsigned me = ty * nx + tx;
    const unsigned pos = Axis == 0 ? tx : ty;
    const unsigned stride_elems = Axis == 0 ? 1u : nx;
    buf[me] = v;
    __syncthreads();
    for (unsigned s = (Axis == 0 ? blockDim.x : blockDim.y) / 2; s > 0; s >>= 1) {
        if (pos < s) buf[me] = op(buf[me], buf[me + s * stride_elems]);
        __syncthreads();
    }
    const T r = buf[Axis == 0 ? ty * nx : tx];
    __syncthreads();  // buf is reused by the caller's next reduction
    return r;
}

// ---- the dropout generator (gpubp/philox.py) ---------------------------------------------
// Philox4x64-10 (Salmon et al., SC 2011): four 64-bit words from a 256-bit counter and a
// 128-bit key, with no state in between, so every thread computes its own element's number.
// The same function as NumPy's numpy.random.Philox, read the same way, so a seed's masks are
// the same on the GPU and on the host.
struct gpubp_philox_block { unsigned long long w[4]; };

__device__ __forceinline__ gpubp_philox_block gpubp_philox4x64(unsigned long long c0, unsigned long long c1,
                                                              unsigned long long c2, unsigned long long c3,
                                                              unsigned long long k0, unsigned long long k1) {
    for (int round = 0; round < 10; ++round) {
        const unsigned long long lo0 = 0xD2E7470EE14C6C93ull * c0, hi0 = __umul64hi(0xD2E7470EE14C6C93ull, c0);
        const unsigned long long lo1 = 0xCA5A826395121157ull * c2, hi1 = __umul64hi(0xCA5A826395121157ull, c2);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B97F4A7C15ull;
        k1 += 0xBB67AE8584CAA73Bull;
    }
    gpubp_philox_block out = {{c0, c1, c2, c3}};
    return out;
}

// The uniform number in [0, 1) of element e of dropout call `call` of stream (seed, stream):
// counter (block + 1, call, 0, 0); float64 takes word e % 4 of block e / 4 as (w >> 11) 2^-53,
// float32 the low (even e) or high half of word (e / 2) % 4 of block e / 8 as (h >> 8) 2^-24.
template <typename T>
__device__ __forceinline__ T gpubp_uniform(unsigned long long seed, unsigned long long stream,
                                           unsigned long long call, unsigned long long e);
template <>
__device__ __forceinline__ double gpubp_uniform<double>(unsigned long long seed, unsigned long long stream,
                                                        unsigned long long call, unsigned long long e) {
    const gpubp_philox_block r = gpubp_philox4x64(e / 4 + 1, call, 0, 0, seed, stream);
    return (double)(r.w[e % 4] >> 11) * 1.1102230246251565e-16;  // 2^-53
}
template <>
__device__ __forceinline__ float gpubp_uniform<float>(unsigned long long seed, unsigned long long stream,
                                                      unsigned long long call, unsigned long long e) {
    const gpubp_philox_block r = gpubp_philox4x64(e / 8 + 1, call, 0, 0, seed, stream);
    const unsigned long long w = r.w[(e / 2) % 4];
    const unsigned int half = (unsigned int)((e % 2) ? (w >> 32) : (w & 0xFFFFFFFFull));
    return (float)(half >> 8) * 5.9604644775390625e-08f;  // 2^-24
}

// The dropout factor of element e: m / (1 - p) = `scale` where kept (u >= p), 0 where dropped.
template <typename T>
__device__ __forceinline__ T gpubp_keep(const T p, const T scale, unsigned long long seed,
                                        unsigned long long stream, unsigned long long call,
                                        unsigned long long e) {
    return gpubp_uniform<T>(seed, stream, call, e) >= p ? scale : T(0);
}

// The parameters every dropout kernel takes after its own (the draw of one training pass).
#define GPUBP_DROPOUT_PARAMS const T p, const T scale, const unsigned long long seed, \
    const unsigned long long stream, const unsigned long long call, const unsigned long long offset
#define GPUBP_DROPOUT_ARGS p, scale, seed, stream, call, offset

// ---- the elementwise forward pass (activation.cu and dropout.cu) -------------------------
// Z^(l) += b^(l) (broadcast over the rows) when Bias, then A^(l) = g(Z^(l)), and when Drop the
// dropout right after the activation: D = A * m / (1 - p), m drawn here for element offset + i
// (no mask array). Z keeps the biased pre-activation and A the activation: the backward pass
// needs them.
template <typename T, typename Act, bool Bias, bool Drop>
__device__ __forceinline__ void gpubp_forward_body(T* Z, const T* __restrict__ b, T* A, T* D,
                                                   const gpubp_index rows, const gpubp_index cols,
                                                   GPUBP_DROPOUT_PARAMS) {
    const gpubp_index size = rows * cols;
    const gpubp_index stride = GPUBP_FLAT_STRIDE;
    gpubp_index i = GPUBP_FLAT_START;
    // the column of flat index i, kept up to date without a 64-bit division per element
    gpubp_index col = (Bias && cols > 0) ? i % cols : 0;
    const gpubp_index col_step = (Bias && cols > 0) ? stride % cols : 0;
    for (; i < size; i += stride) {
        T z = Z[i];
        if (Bias) {
            z += b[col];
            Z[i] = z;
            col += col_step;
            if (col >= cols) col -= cols;
        }
        const T a = Act::forward(z);
        A[i] = a;
        if (Drop) D[i] = a * gpubp_keep<T>(p, scale, seed, stream, call, (unsigned long long)(offset + i));
    }
}

