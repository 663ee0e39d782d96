"""Makes the "Seeing backprop" example of the README: the explanation it prints and docs/network.png.

    python docs/seeing_backprop.py
"""
import io
from pathlib import Path

from PIL import Image  # matplotlib's own dependency

import gpubp
from gpubp.data import load_digits, one_hot, train_test_split
from gpubp.plot import network

X, y = load_digits()
X_tr, X_te, y_tr, y_te = train_test_split(X, y, 0.2, seed=0)
Y_tr, Y_te = one_hot(y_tr, 10), one_hot(y_te, 10)

# the tutorial's network: sigmoid layers, the sum of squared errors, no biases
net = gpubp.MLP([64, 16, 16, 10], activation="sigmoid", loss="sse", bias=False, dtype="float64", seed=0)
net.fit(X_tr, Y_tr, epochs=5, batch_size=32, optimizer=gpubp.SGD(0.5), progress=False)

print(net.explain(X_te[:2], Y_te[:2], "w_22^(L-1)"))
fig = network(net, X_te[:32], Y_te[:32], show="gradients")
png = io.BytesIO()
fig.savefig(png, dpi=90, bbox_inches="tight")
# 64 colours keep the picture small in the repository
Image.open(png).convert("RGB").quantize(64).save(Path(__file__).with_name("network.png"), optimize=True)
