"""Independent numpy references of the built-in losses (explicit loops, no torch).

Each function follows the paper's formula directly, so a test comparing it with the
plugin checks the plugin against the paper, not against itself.
"""

from __future__ import annotations

import math

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a 1-D vector."""
    e = np.exp(z - z.max())
    return e / e.sum()


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) = sum p log(p/q)."""
    return float(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean CE over rows whose label is not -1 (0 when none is)."""
    rows = [i for i in range(len(labels)) if labels[i] != -1]
    if not rows:
        return 0.0
    return sum(-math.log(softmax(logits[i])[labels[i]]) for i in rows) / len(rows)


def hinton(s: np.ndarray, t: np.ndarray, labels: np.ndarray, temp: float, alpha: float) -> float:
    """(1 - alpha) CE + alpha T^2 mean_rows KL(softmax(t/T) || softmax(s/T))."""
    soft = sum(kl(softmax(t[i] / temp), softmax(s[i] / temp)) for i in range(len(s))) / len(s)
    return (1 - alpha) * cross_entropy(s, labels) + alpha * temp**2 * soft


def logit_mse(s: np.ndarray, t: np.ndarray, labels: np.ndarray, alpha: float) -> float:
    """(1 - alpha) CE + alpha mean (s - t)^2."""
    total = 0.0
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            total += (s[i, j] - t[i, j]) ** 2
    return (1 - alpha) * cross_entropy(s, labels) + alpha * total / s.size


def fitnets_hint(adapted: list[np.ndarray], teacher: list[np.ndarray]) -> float:
    """Mean over pairs of 1/2 * mean over elements of (teacher - adapted student)^2."""
    values = []
    for a, t in zip(adapted, teacher, strict=True):
        flat_a, flat_t = a.reshape(-1), t.reshape(-1)
        values.append(
            0.5 * sum((x - y) ** 2 for x, y in zip(flat_a, flat_t, strict=True)) / flat_a.size
        )
    return sum(values) / len(values)


def attention(feature: np.ndarray) -> np.ndarray:
    """Per row: sum over channels of squares (n, C, H, W) -> (n, H*W), L2-normalised."""
    n, c, h, w = feature.shape
    out = np.zeros((n, h * w))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                out[i, y * w + x] = sum(feature[i, k, y, x] ** 2 for k in range(c))
        out[i] /= math.sqrt(sum(v**2 for v in out[i]))
    return out


def attention_transfer(s_feats: list[np.ndarray], t_feats: list[np.ndarray], beta: float) -> float:
    """beta/2 * sum over pairs of mean (Q_s - Q_t)^2 (the authors' normalised form)."""
    total = 0.0
    for s, t in zip(s_feats, t_feats, strict=True):
        q_s, q_t = attention(s), attention(t)
        total += float(((q_s - q_t) ** 2).sum()) / q_s.size
    return beta / 2 * total


def huber(x: float, y: float) -> float:
    """Smooth L1 with delta 1."""
    d = abs(x - y)
    return 0.5 * d * d if d < 1 else d - 0.5


def rkd(s: np.ndarray, t: np.ndarray, w_d: float, w_a: float) -> tuple[float, float, float]:
    """(total, L_D, L_A) of RKD on embeddings (n, D), over all pairs and triplets."""
    n = len(s)

    def dists(e: np.ndarray) -> np.ndarray:
        d = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                if i != j:
                    d[i, j] = math.sqrt(sum((a - b) ** 2 for a, b in zip(e[i], e[j], strict=True)))
        mu = sum(d[i, j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        return d / mu

    ds, dt = dists(s), dists(t)
    l_d = sum(huber(ds[i, j], dt[i, j]) for i in range(n) for j in range(n)) / (n * n)

    def cos_angle(e: np.ndarray, i: int, j: int, k: int) -> float:
        u, v = e[i] - e[j], e[k] - e[j]
        nu, nv = np.linalg.norm(u), np.linalg.norm(v)
        if nu == 0 or nv == 0:
            return 0.0
        return float(u @ v / (nu * nv))

    # The authors' tensor is indexed [j, i, k] -> angle at e_j between e_i and e_k.
    l_a = 0.0
    for j in range(n):
        for i in range(n):
            for k in range(n):
                l_a += huber(cos_angle(s, i, j, k), cos_angle(t, i, j, k))
    l_a /= n**3
    return w_d * l_d + w_a * l_a, l_d, l_a


def dkd(
    s: np.ndarray, t: np.ndarray, target: np.ndarray, temp: float, alpha: float, beta: float
) -> tuple[float, float]:
    """(TCKD, NCKD) row means from the paper's definitions (no T^2, no weights)."""
    tckd = nckd = 0.0
    n, classes = s.shape
    for i in range(n):
        p_s, p_t = softmax(s[i] / temp), softmax(t[i] / temp)
        g = target[i]
        b_s = np.array([p_s[g], 1 - p_s[g]])
        b_t = np.array([p_t[g], 1 - p_t[g]])
        tckd += kl(b_t, b_s)
        others = [c for c in range(classes) if c != g]
        # Renormalised distribution over the non-target classes (the paper's p-hat).
        q_s = np.array([p_s[c] for c in others]) / (1 - p_s[g])
        q_t = np.array([p_t[c] for c in others]) / (1 - p_t[g])
        nckd += kl(q_t, q_s)
    return tckd / n, nckd / n


def cosine(s: np.ndarray, t: np.ndarray) -> float:
    """Mean over rows of 1 - cos(s_i, t_i) for flattened rows."""
    total = 0.0
    for a, b in zip(s.reshape(len(s), -1), t.reshape(len(t), -1), strict=True):
        total += 1 - float(a @ b) / (math.sqrt(float(a @ a)) * math.sqrt(float(b @ b)))
    return total / len(s)


def _known(y: np.ndarray, i: int, j: int) -> bool:
    return not math.isnan(y[i, j])


def masked_mse(s: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error over the cells whose label is not NaN (0 when none is)."""
    cells = [
        (s[i, j] - y[i, j]) ** 2
        for i in range(s.shape[0])
        for j in range(s.shape[1])
        if _known(y, i, j)
    ]
    return sum(cells) / len(cells) if cells else 0.0


def regression_kd(
    s: np.ndarray, t: np.ndarray, y: np.ndarray, alpha: float, margin: float | None = None
) -> float:
    """(1 - alpha) label + alpha mean (s - t)^2; with ``margin``, Chen et al.'s bound.

    Teacher bounded regression loss (Chen et al. 2017): a row's label term is
    ||s - y||^2 if ||s - y||^2 + m > ||t - y||^2 and 0 otherwise; averaged here over
    all labeled cells like the unbounded term.
    """
    n, r = s.shape
    kd = sum((s[i, j] - t[i, j]) ** 2 for i in range(n) for j in range(r)) / (n * r)
    if margin is None:
        label = masked_mse(s, y)
    else:
        total, count = 0.0, 0
        for i in range(n):
            cols = [j for j in range(r) if _known(y, i, j)]
            err_s = sum((s[i, j] - y[i, j]) ** 2 for j in cols)
            err_t = sum((t[i, j] - y[i, j]) ** 2 for j in cols)
            if cols and err_s + margin > err_t:
                total += err_s
            count += len(cols)
        label = total / count if count else 0.0
    return (1 - alpha) * label + alpha * kd


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x)."""
    return 1.0 / (1.0 + math.exp(-x))


def masked_bce(s: np.ndarray, y: np.ndarray) -> float:
    """Binary cross-entropy of sigmoid(s) against 0/1 labels over the non-NaN cells."""
    cells = []
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            if _known(y, i, j):
                p = sigmoid(s[i, j])
                cells.append(-(y[i, j] * math.log(p) + (1 - y[i, j]) * math.log(1 - p)))
    return sum(cells) / len(cells) if cells else 0.0


def label_temperatures(t: np.ndarray, base: float) -> list[float]:
    """T_l = T * clamp(std_l / median(std), 0.5, 2) from the teacher's logits (n, L)."""
    n, labels = t.shape
    stds = []
    for j in range(labels):
        mean = sum(t[i, j] for i in range(n)) / n
        stds.append(math.sqrt(sum((t[i, j] - mean) ** 2 for i in range(n)) / n))
    ordered = sorted(stds)
    # torch.median takes the lower of the two middle values for an even count.
    median = ordered[(labels - 1) // 2]
    return [base * min(max(sd / median, 0.5), 2.0) for sd in stds]


def multilabel_kd(
    s: np.ndarray, t: np.ndarray, y: np.ndarray, temps: list[float], alpha: float
) -> float:
    """(1 - alpha) BCE + alpha mean over cells of T_l^2 KL(Bern(p_t) || Bern(p_s)) at T_l."""
    n, labels = s.shape
    kd = 0.0
    for i in range(n):
        for j in range(labels):
            p, q = sigmoid(t[i, j] / temps[j]), sigmoid(s[i, j] / temps[j])
            kd += temps[j] ** 2 * (p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q)))
    return (1 - alpha) * masked_bce(s, y) + alpha * kd / (n * labels)
