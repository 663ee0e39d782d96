"""How a Dense layer forms dC_0/dz_j: the three forms an explanation shows.

* :data:`CHAIN`: the tutorial's product dC_0/da_j * g'(z_j) (an elementwise g, or none: g' = 1);
* :data:`SOFTMAX`: a softmax output under a squared error: every a_r depends on z_j, so the row
  of dC_0/da_r is contracted with the Jacobian's column da_r/dz_j = a_r ([r = j] - a_j);
* :data:`FUSED`: a loss head that gives dC_0/dz_j^(L) as one factor (softmax with
  cross-entropy, sigmoid with binary cross-entropy: a_j - y_j), never forming its two factors.
"""
CHAIN, SOFTMAX, FUSED = "chain", "softmax", "fused"
