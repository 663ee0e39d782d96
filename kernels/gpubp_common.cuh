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
