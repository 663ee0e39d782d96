// Optimizer updates over the flat parameter buffer (MATH.md, update: w <- w - eta dC/dw),
// one launch for every parameter of the network. The arithmetic follows torch.optim (and
// gpubp.ops.base.Ops) operation for operation. Compiled after gpubp_common.cuh.

// The gradient with L2 weight decay: g + wd w (skipped when wd == 0, so inf/NaN weights
// do not turn a zero decay into NaN).
template <typename T>
__device__ __forceinline__ T gpubp_decayed(const T g, const T w, const T wd) {
    return wd != T(0) ? g + wd * w : g;
}

// Plain SGD: w <- w - lr g.
template <typename T>
__global__ void sgd(T* __restrict__ params, const T* __restrict__ grads, const gpubp_index size,
                    const T lr, const T wd) {
    for (gpubp_index i = GPUBP_FLAT_START; i < size; i += GPUBP_FLAT_STRIDE) {
        const T g = gpubp_decayed(grads[i], params[i], wd);
        params[i] = params[i] - lr * g;
    }
}

// SGD with momentum: v <- mu v + g; w <- w - lr (g + mu v) (Nesterov) or w - lr v.
template <typename T>
__global__ void sgd_momentum(T* __restrict__ params, const T* __restrict__ grads, T* __restrict__ velocity,
                             const gpubp_index size, const T lr, const T momentum, const T wd,
                             const int nesterov) {
    for (gpubp_index i = GPUBP_FLAT_START; i < size; i += GPUBP_FLAT_STRIDE) {
        const T g = gpubp_decayed(grads[i], params[i], wd);
        const T v = velocity[i] * momentum + g;
        velocity[i] = v;
        const T step = nesterov ? g + momentum * v : v;
        params[i] = params[i] - lr * step;
    }
}

// Adam step t: m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
// w <- w - step_size m / (sqrt(v) / sqrt_bias2 + eps), with step_size = lr / (1 - b1^t) and
// sqrt_bias2 = sqrt(1 - b2^t) computed on the host in double precision.
template <typename T>
__global__ void adam(T* __restrict__ params, const T* __restrict__ grads, T* __restrict__ m,
                     T* __restrict__ v, const gpubp_index size, const T step_size, const T b1,
                     const T one_minus_b1, const T b2, const T one_minus_b2, const T sqrt_bias2,
                     const T eps, const T wd) {
    for (gpubp_index i = GPUBP_FLAT_START; i < size; i += GPUBP_FLAT_STRIDE) {
        const T g = gpubp_decayed(grads[i], params[i], wd);
        const T mi = m[i] * b1 + one_minus_b1 * g;
        const T vi = v[i] * b2 + one_minus_b2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        const T denom = sqrt(vi) / sqrt_bias2 + eps;
        params[i] = params[i] - step_size * (mi / denom);
    }
}

// AdamW step t (Loshchilov & Hutter; torch.optim.AdamW): the decay is decoupled from the
// gradient, w <- w (1 - lr wd) with decay = 1 - lr wd computed on the host, then Adam's
// moments and step from the gradient alone.
template <typename T>
__global__ void adamw(T* __restrict__ params, const T* __restrict__ grads, T* __restrict__ m,
                      T* __restrict__ v, const gpubp_index size, const T step_size, const T b1,
                      const T one_minus_b1, const T b2, const T one_minus_b2, const T sqrt_bias2,
                      const T eps, const T decay) {
    for (gpubp_index i = GPUBP_FLAT_START; i < size; i += GPUBP_FLAT_STRIDE) {
        const T g = grads[i];
        const T w = params[i] * decay;
        const T mi = m[i] * b1 + one_minus_b1 * g;
        const T vi = v[i] * b2 + one_minus_b2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        const T denom = sqrt(vi) / sqrt_bias2 + eps;
        params[i] = w - step_size * (mi / denom);
    }
}
