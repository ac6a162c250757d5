"""Building blocks shared by the networks: annotated linear/norm/conv layers, attention, RoPE, adaLN.

Every parameter is created with two pieces of metadata:
* ``axes``  — its logical axis names (mapped to the mesh by ``parallel``);
* ``torch`` — the layout of the matching PyTorch tensor (``linear``, ``conv``, ``conv_transpose`` or
  ``plain``), so that ``weights.torch_import`` can load original checkpoints without per-layer code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from uniflow_jax import nnx_utils, parallel
from uniflow_jax.models import splash

Initializer = nnx.initializers.Initializer

xavier_uniform = nnx.initializers.xavier_uniform()
zeros = nnx.initializers.zeros_init()
ones = nnx.initializers.ones_init()


def init_with_axes(init: Initializer, axes: tuple[str | None, ...], torch: str = "plain") -> Initializer:
    """Attaches logical axes and the PyTorch layout tag to an initializer."""
    return nnx.with_metadata(init, axes=axes, torch=torch)


def embed(num: int, dim: int, std: float, rngs: nnx.Rngs) -> nnx.Embed:
    """An embedding table (num, dim) ~ N(0, std²) with logical axes ('vocab', 'embed')."""
    return nnx.Embed(
        num, dim, embedding_init=init_with_axes(nnx.initializers.normal(std), ("vocab", "embed")), rngs=rngs
    )


class Buffer(nnx.Variable):
    """Non-trainable state that the original checkpoints store next to the weights (e.g. RoPE frequencies)."""


class Linear(nnx.Linear):
    """``nnx.Linear`` whose kernel (in, out) and bias carry logical axes; loads torch (out, in) weights."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        axes: tuple[str | None, str | None],
        *,
        use_bias: bool = True,
        kernel_init: Initializer = xavier_uniform,
        bias_init: Initializer = zeros,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            in_features,
            out_features,
            use_bias=use_bias,
            kernel_init=init_with_axes(kernel_init, axes, "linear"),
            bias_init=init_with_axes(bias_init, axes[1:]),
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, columns: slice = slice(None)) -> jax.Array:
        """x @ kernel + bias, as one (tokens, C) matrix product (see :func:`tokens_2d`). ``columns`` restricts
        the layer to a range of its output features (a packed projection applied part by part)."""
        kernel = self.kernel[...][:, columns]
        bias = None if self.bias is None else self.bias[...][columns]
        x, kernel, bias = self.promote_dtype((x, kernel, bias), dtype=self.dtype)
        y = tokens_2d(lambda t: t @ kernel, x)
        return y if bias is None else y + bias


def tokens_2d(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """Applies a per-token ``fn`` to (..., C) as one (tokens, C) matrix. A weight gradient then contracts a
    single tokens axis, which XLA:CPU reads in place; contracting (batch, time) it first transposed the
    wider operand (a 2000×2048 copy per layer)."""
    y = fn(x.reshape(-1, x.shape[-1]))
    return y.reshape(*x.shape[:-1], y.shape[-1])


class LayerNorm(nnx.LayerNorm):
    """Affine LayerNorm over the last axis (PyTorch defaults: eps 1e-5), statistics in float32."""

    def __init__(self, dim: int, axis_name: str | None, *, eps: float = 1e-5, rngs: nnx.Rngs):
        super().__init__(
            dim,
            epsilon=eps,
            scale_init=init_with_axes(ones, (axis_name,)),
            bias_init=init_with_axes(zeros, (axis_name,)),
            rngs=rngs,
        )


def conv1d(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> jax.Array:
    """PyTorch ``Conv1d`` on channels-last input: kernel (k, in, out), symmetric zero padding."""
    y = jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(stride,),
        padding=((padding, padding),),
        rhs_dilation=(dilation,),
        dimension_numbers=("NWC", "WIO", "NWC"),
    )
    return y if bias is None else y + bias.astype(y.dtype)


def conv_transpose1d(
    x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *, stride: int, padding: int
) -> jax.Array:
    """PyTorch ``ConvTranspose1d`` on channels-last input; kernel (k, in, out), unflipped as torch stores it.

    Output length (T − 1)·stride + k − 2·padding, exactly as PyTorch (no output_padding).
    """
    k = kernel.shape[0]
    y = jax.lax.conv_general_dilated(
        x,
        jnp.flip(kernel, axis=0).astype(x.dtype),
        window_strides=(1,),
        padding=((k - 1 - padding, k - 1 - padding),),
        lhs_dilation=(stride,),
        dimension_numbers=("NWC", "WIO", "NWC"),
    )
    return y if bias is None else y + bias.astype(y.dtype)


class Conv1d(nnx.Module):
    """PyTorch-compatible Conv1d (channels-last activations, kernel stored as (k, in, out))."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        axes: tuple[str | None, str | None],
        *,
        padding: int = 0,
        kernel_init: Initializer = xavier_uniform,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ):
        self.padding = padding
        self.dtype = dtype
        kinit = init_with_axes(kernel_init, ("kernel", *axes), "conv")
        self.kernel = nnx.Param(kinit(rngs.params(), (kernel_size, in_channels, out_channels)))
        self.bias = nnx.Param(init_with_axes(zeros, axes[1:])(rngs.params(), (out_channels,)))

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """``mask`` (B, T): the valid frames; the others are read as zeros, so that a padded row gives its valid
        frames exactly what the unpadded row gives (the kernel reaches across the end)."""
        x = x.astype(self.dtype) if self.dtype is not None else x
        x = x if mask is None else x * mask[..., None].astype(x.dtype)
        return conv1d(x, self.kernel[...], self.bias[...], padding=self.padding)


def sinusoidal_timestep_embedding(t: jax.Array, dim: int = 256, max_period: float = 10000.0) -> jax.Array:
    """The original's timestep embedding: frequencies exp(−ln(max_period)·i/half), **cos half first**."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def rope_inv_freq(head_dim: int, base: float = 10000.0) -> jax.Array:
    return 1.0 / (base ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))


def rope_table(inv_freq: jax.Array, length: int) -> jax.Array:
    """cos and sin of the rotary angles of positions 0..length−1, rotate-half layout: (2, length, Dh), float32."""
    freqs = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    angles = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.stack([jnp.cos(angles), jnp.sin(angles)])


def apply_rope(x: jax.Array, table: jax.Array) -> jax.Array:
    """Rotary embedding with a :func:`rope_table`, computed in float32. x: (B, T, H, Dh)."""
    cos, sin = table[0][None, :, None, :], table[1][None, :, None, :]
    xf = x.astype(jnp.float32)
    x1, x2 = jnp.split(xf, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (xf * cos + rotated * sin).astype(x.dtype)


def masked_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None, implementation: str = "xla"
) -> jax.Array:
    """Scaled dot-product attention over (B, T, H, Dh); ``key_mask`` (B, S) hides padded keys only.

    ``implementation``: ``jax.nn.dot_product_attention``'s — "xla" (every backend), or "cudnn" (cuDNN's fused
    flash attention: GPU, bf16/fp16; it raises for shapes it does not support) — or "splash" (the Pallas
    splash-attention kernel: TPU; :mod:`uniflow_jax.models.splash`). jax does not choose by itself (its default
    is XLA); ``config_lib.dit_config`` resolves the config's "auto".
    """
    if implementation == "splash":
        return splash.splash_attention(q, k, v, key_mask)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)


class Attention(nnx.Module):
    """Multi-head attention with LayerNorm on q and k (shared over heads, before RoPE) and no qkv bias.

    Self-attention applies RoPE (``rope=True``); cross-attention does not.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        rope: bool,
        zero_out: bool = False,
        dtype: jnp.dtype | None = None,
        implementation: str = "xla",
        rngs: nnx.Rngs,
    ):
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.implementation = num_heads, implementation
        head_dim = dim // num_heads
        self.to_q = Linear(dim, dim, ("embed", "heads"), use_bias=False, dtype=dtype, rngs=rngs)
        self.to_k = Linear(dim, dim, ("embed", "heads"), use_bias=False, dtype=dtype, rngs=rngs)
        self.to_v = Linear(dim, dim, ("embed", "heads"), use_bias=False, dtype=dtype, rngs=rngs)
        self.norm_q = LayerNorm(head_dim, "kv", rngs=rngs)
        self.norm_k = LayerNorm(head_dim, "kv", rngs=rngs)
        out_init = zeros if zero_out else xavier_uniform
        self.proj = Linear(dim, dim, ("heads", "embed"), kernel_init=out_init, dtype=dtype, rngs=rngs)
        if rope:
            self.rotary = Rotary(head_dim)

    def __call__(
        self, x: jax.Array, context: jax.Array, key_mask: jax.Array | None, rope: jax.Array | None = None
    ) -> jax.Array:
        return self.attend(x, *self.key_values(context, rope), key_mask, rope)

    def key_values(self, context: jax.Array, rope: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Keys (normed, rotated for self-attention) and values (B, S, H, Dh) of ``context``: a constant of a
        whole generation for cross-attention, so the sampler computes them once."""
        b, s, d = context.shape
        heads = (self.num_heads, d // self.num_heads)
        k = self.norm_k(self.to_k(context).reshape(b, s, *heads))
        v = self.to_v(context).reshape(b, s, *heads)
        if hasattr(self, "rotary"):
            k = apply_rope(k, self.rotary.table(s) if rope is None else rope)
        return k.astype(v.dtype), v

    def attend(
        self, x: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None, rope: jax.Array | None = None
    ) -> jax.Array:
        """Attention of ``x``'s queries to ``k``/``v``; ``rope``: the :meth:`Rotary.table` for ``x``'s length
        when the caller has it (else computed here)."""
        b, t, d = x.shape
        q = self.norm_q(self.to_q(x).reshape(b, t, self.num_heads, d // self.num_heads))
        if hasattr(self, "rotary"):
            q = apply_rope(q, self.rotary.table(t) if rope is None else rope)
        q = parallel.constrain(q.astype(v.dtype), ("batch", "length", "heads", "kv"))
        return self.proj(masked_attention(q, k, v, key_mask, self.implementation).reshape(b, t, d))


class TorchMultiheadAttention(nnx.Module):
    """``torch.nn.MultiheadAttention`` (equal q/k/v widths): one packed q|k|v projection, no q/k norms."""

    def __init__(self, dim: int, num_heads: int, *, use_bias: bool, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.in_proj = Linear(dim, 3 * dim, ("embed", "heads"), use_bias=use_bias, rngs=rngs)
        self.out_proj = Linear(dim, dim, ("heads", "embed"), use_bias=use_bias, rngs=rngs)

    def __call__(self, query: jax.Array, key_value: jax.Array, key_mask: jax.Array | None) -> jax.Array:
        d = query.shape[-1]
        q = self.in_proj(query, slice(0, d))
        k, v = jnp.split(self.in_proj(key_value, slice(d, None)), 2, axis=-1)
        heads = lambda a: a.reshape(*a.shape[:2], self.num_heads, d // self.num_heads)  # noqa: E731
        out = masked_attention(heads(q), heads(k), heads(v), key_mask)
        return self.out_proj(out.reshape(query.shape))


class Rotary(nnx.Module):
    """Holds RoPE's inverse frequencies as a buffer, as the original checkpoints do."""

    def __init__(self, head_dim: int):
        self.inv_freq = Buffer(rope_inv_freq(head_dim), axes=("kv",), torch="plain")

    def table(self, length: int) -> jax.Array:
        """The (2, length, Dh) cos/sin table. A loop over layers computes it once, outside the loop (see
        ``DiT.__call__``): inside, XLA:CPU fuses cos and sin into each (B, T, H, Dh) consumer and evaluates them
        once per head and sample, and a per-layer table sliced from a stack is no better (9 % of a train step)."""
        return rope_table(self.inv_freq[...], length)


def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU written as PyTorch computes it, x·½(1 + erf(x/√2)) (``jax.nn.gelu`` goes through erfc,
    which XLA:CPU evaluates at half the speed)."""
    return x * (0.5 * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0)))))


class GEGLUFeedForward(nnx.Module):
    """Linear(D→2H) → value·GELU(gate) (exact erf) → Linear(H→D).

    The value and gate halves are two matmuls with the two halves of the (D, 2H) kernel rather than one
    matmul split afterwards: the backward pass then needs no (T, 2H) concatenation of their gradients,
    which XLA would also copy into the layout of the weight-gradient matmul.
    """

    def __init__(self, dim: int, hidden: int, *, dtype: jnp.dtype | None = None, rngs: nnx.Rngs):
        self.proj_in = Linear(dim, 2 * hidden, ("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.proj_out = Linear(hidden, dim, ("mlp", "embed"), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = self.proj_out.in_features
        value, gate = self.proj_in(x, slice(0, hidden)), self.proj_in(x, slice(hidden, None))
        h = parallel.constrain(value * gelu(gate), ("batch", "length", "mlp"))
        return self.proj_out(h)


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    """adaLN / FiLM modulation x·(1 + scale) + shift, with (B, D) shift and scale."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


def create_stack(make: Callable[[nnx.Rngs], nnx.Module], count: int, rngs: nnx.Rngs) -> nnx.Module:
    """``count`` independently initialised copies of ``make(rngs)`` whose parameters share a leading
    ``layers`` axis, to be applied with :func:`scan_stack`."""

    @nnx.split_rngs(splits=count)
    @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers", "axes": "layers"})
    def create(rngs: nnx.Rngs) -> nnx.Module:
        return make(rngs)

    return create(rngs)


def _select_layer(stacked: jax.Array, index: jax.Array) -> jax.Array:
    """Layer ``index`` of a stacked parameter, by a one-hot contraction over the ``layers`` axis.

    Exact (one non-zero term) for finite values; a NaN or Inf in *another* layer's vector would leak in as
    0·NaN, but a model with such values is broken anyway (the train step never saves one). Used for per-layer
    vectors (norm scales, biases): a dynamic slice of them would be fused into the elementwise kernel that
    reads them, and on XLA:CPU such a kernel loses its vectorisation (a GELU over 1000×3072 took 14 ms
    instead of 2 ms); the contraction's result is a buffer of its own.
    """
    count = stacked.shape[0]
    one_hot = jax.nn.one_hot(index, count, dtype=stacked.dtype)
    return (one_hot @ stacked.reshape(count, -1)).reshape(stacked.shape[1:])


def checkpointed(module: nnx.Module, body: Callable[..., Any], *args: Any, remat_policy: Callable | None) -> Any:
    """``body(module, *args)``, rematerialised with ``remat_policy`` as :func:`scan_stack` does its layers (None:
    as is): a block outside a layer stack then keeps for the backward pass only what the policy saves, not
    every activation (its attention probabilities among them)."""
    if remat_policy is None:
        return body(module, *args)
    graphdef, state = nnx.split(module)
    return jax.checkpoint(lambda s, *a: body(nnx.merge(graphdef, s), *a), policy=remat_policy)(state, *args)


def scan_stack(
    stack: nnx.Module,
    body: Callable[[nnx.Module, Any, Any], tuple[Any, Any]],
    carry: Any,
    xs: Any = None,
    remat_policy: Callable | None = None,
    unroll: int = 1,
) -> tuple[Any, Any]:
    """Runs ``body(layer, carry, x) -> (carry, y)`` over the layers of a stacked module with ``lax.scan``
    (one traced layer whatever the depth), optionally rematerialised with ``remat_policy``; ``unroll``
    layers per loop iteration (all of them inside ``nnx_utils.loops_unrolled``).

    Per-layer matrices are sliced by the scan; per-layer vectors are selected by :func:`_select_layer`.
    """
    graphdef, state = nnx.split(stack)
    leaves, treedef = jax.tree.flatten(state)
    is_vector = [leaf.ndim <= 2 and jnp.issubdtype(leaf.dtype, jnp.floating) for leaf in leaves]
    vectors = {i: leaf for i, leaf in enumerate(leaves) if is_vector[i]}
    matrices = {i: leaf for i, leaf in enumerate(leaves) if not is_vector[i]}

    def step(carry, inputs):
        index, carry = carry
        layer_matrices, x = inputs
        layer = {**{i: _select_layer(v, index) for i, v in vectors.items()}, **layer_matrices}
        carry, y = body(
            nnx.merge(graphdef, jax.tree.unflatten(treedef, [layer[i] for i in range(len(leaves))])), carry, x
        )
        return (index + 1, carry), y

    if remat_policy is not None:
        step = jax.checkpoint(step, policy=remat_policy)
    (_, carry), ys = jax.lax.scan(step, (jnp.int32(0), carry), (matrices, xs), unroll=nnx_utils.scan_unroll(unroll))
    return carry, ys
