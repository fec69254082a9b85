package org.pixelpost.nn;

import org.bytedeco.pytorch.LongOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.tensor.Tensors;

/** The parameterised layers the models are built from, initialised as PyTorch initialises them. */
public final class Layers {
    private Layers() {}

    /**
     * The 2-D convolution every layer runs ({@code w [out, in, k, k]}, square stride and padding).
     *
     * <p>On the CPU it keeps to the oneDNN paths that compute correctly in the libtorch build
     * PixelPost links (2.10.0, oneDNN 3.7.1): there, reordering a plain-layout (NCHW) tensor into one
     * of oneDNN's blocked layouts whose channel count needs padding leaves garbage in the padding, and
     * the convolution reads it. Measured against a float64 reference it gave outputs off by the size
     * of the values for 17-31 input channels, input gradients off (NaN when fresh memory held NaN)
     * for an output channel count that is not a multiple of 16 (SD's {@code conv_out}, 4 channels),
     * wrong 1x1 convolutions (40 output channels; any stride-2 1x1, which also crashed in its weight
     * gradient), and, in bf16, NaN input gradients for an odd output channel count (a VAE's last
     * convolution, 3 channels). So: a 1x1 convolution is the matrix product over channels it is;
     * any other runs channels-last (reorders from that layout are correct), with its output
     * channels zero-padded to a multiple of 16 and the padding cut from the result.
     */
    public static Tensor conv2d(Tensor x, Tensor w, Tensor b, long stride, long padding) {
        if (!x.is_cpu())
            return torch.conv2d(x, w, Tensors.opt(b), new long[] {stride, stride}, new long[] {padding, padding}, new long[] {1, 1}, 1);
        long out = w.size(0), in = w.size(1);
        if (w.size(2) == 1 && w.size(3) == 1 && padding == 0) {
            Tensor xs = stride == 1 ? x : x.slice(2, new LongOptional(0), new LongOptional(x.size(2)), stride)
                .slice(3, new LongOptional(0), new LongOptional(x.size(3)), stride);     // [B, in, H', W']
            long n = xs.size(0), h = xs.size(2), wd = xs.size(3);
            // one 2-D product: a batched input would let matmul's path (and its rounding) follow requires_grad
            return torch.linear(xs.permute(0, 2, 3, 1).reshape(n * h * wd, in), w.reshape(out, in), Tensors.opt(b)) // [B*H'*W', out]
                .view(n, h, wd, out)                                                      // [B, H', W', out]
                .permute(0, 3, 1, 2);                                                     // [B, out, H', W']
        }
        long padded = (out + 15) / 16 * 16;
        Tensor wk = w, bk = b;
        if (padded != out) {
            wk = torch.constant_pad_nd(w, 0, 0, 0, 0, 0, 0, 0, padded - out);             // [padded, in, k, k]
            bk = b == null ? null : torch.constant_pad_nd(b, 0, padded - out);            // [padded]
        }
        Tensor y = torch.conv2d(x.contiguous(torch.MemoryFormat.ChannelsLast), wk.contiguous(torch.MemoryFormat.ChannelsLast),
            Tensors.opt(bk), new long[] {stride, stride}, new long[] {padding, padding}, new long[] {1, 1}, 1); // [B, padded, H', W']
        return padded == out ? y : y.narrow(1, 0, out);                                  // [B, out, H', W']
    }

    /**
     * A layer with a weight that may carry a low-rank adapter: the slot {@link Lora} fills. The
     * adapter's {@code lora_A.weight} and {@code lora_B.weight} are parameters of the layer itself,
     * and the layer's own forward adds the adapter's delta while it is on.
     */
    public abstract static class Adaptable extends Module implements Layer {
        public final Tensor weight, bias;
        private Lora.Adapter adapter;

        Adaptable(Tensor weight, Tensor bias) {
            this.weight = param("weight", weight);
            this.bias = bias == null ? null : param("bias", bias);
        }

        /** The layer's adapter, or null. */
        public Lora.Adapter adapter() {
            return adapter;
        }

        /** Puts {@code a} in the slot; its A and B become the layer's {@code lora_A.weight} and {@code lora_B.weight}. */
        void adapter(Lora.Adapter a) {
            if (adapter != null) throw new IllegalStateException("the layer already has an adapter");
            param("lora_A.weight", a.down());
            param("lora_B.weight", a.up());
            adapter = a;
        }

        /** The layer without its adapter. */
        abstract Tensor base(Tensor x);

        /** The adapter's path {@code scale * B A x} in this layer's kind of product. */
        abstract Tensor delta(Lora.Adapter a, Tensor x);

        @Override
        public Tensor forward(Tensor x) {
            Tensor y = base(x);
            return adapter == null || !adapter.enabled() ? y : y.add(delta(adapter, adapter.drop(x)));
        }
    }

    public static class Conv2d extends Adaptable {
        private final long stride, padding;

        public Conv2d(long in, long out, long kernel, long stride, long padding, boolean bias) {
            // channels-last: the layout conv2d runs in, so no step reorders the kernel
            super(Init.uniform(1 / Math.sqrt(in * kernel * kernel), out, in, kernel, kernel).contiguous(torch.MemoryFormat.ChannelsLast),
                bias ? Init.uniform(1 / Math.sqrt(in * kernel * kernel), out) : null);
            this.stride = stride;
            this.padding = padding;
        }

        public long stride() { return stride; }
        public long padding() { return padding; }

        /** 3x3, padding 1, stride 1, with bias. */
        public static Conv2d k3(long in, long out) {
            return new Conv2d(in, out, 3, 1, 1, true);
        }

        /** 1x1 without padding. */
        public static Conv2d k1(long in, long out, boolean bias) {
            return new Conv2d(in, out, 1, 1, 0, bias);
        }

        @Override
        Tensor base(Tensor x) {
            return conv2d(x, weight, bias, stride, padding);                                // [B, out, H', W']
        }

        @Override
        Tensor delta(Lora.Adapter a, Tensor x) {
            Tensor h = conv2d(x, a.down(), null, stride, padding);                           // [B, r, H', W']
            return conv2d(h, a.up(), null, 1, 0).mul(Tensors.s(a.scale()));                  // [B, out, H', W']
        }
    }

    public static class Linear extends Adaptable {
        public Linear(long in, long out, boolean bias) {
            super(Init.uniform(1 / Math.sqrt(in), out, in), bias ? Init.uniform(1 / Math.sqrt(in), out) : null);
        }

        public Linear(long in, long out) {
            this(in, out, true);
        }

        @Override
        Tensor base(Tensor x) {
            return torch.linear(x, weight, Tensors.opt(bias));                               // [..., out]
        }

        @Override
        Tensor delta(Lora.Adapter a, Tensor x) {
            Tensor h = torch.linear(x, a.down(), Tensors.opt(null));                        // [..., r]
            return torch.linear(h, a.up(), Tensors.opt(null)).mul(Tensors.s(a.scale()));     // [..., out]
        }
    }

    public static final class GroupNorm extends Module implements Layer {
        public final Tensor weight, bias;
        private final long groups;
        private final double eps;

        public GroupNorm(long groups, long channels, double eps) {
            this.groups = groups;
            this.eps = eps;
            this.weight = param("weight", Init.ones(channels));
            this.bias = param("bias", Init.zeros(channels));
        }

        @Override
        public Tensor forward(Tensor x) {
            return torch.group_norm(x, groups, Tensors.opt(weight), Tensors.opt(bias), eps, true);
        }
    }

    public static final class LayerNorm extends Module implements Layer {
        public final Tensor weight, bias;
        private final long dim;
        private final double eps;

        public LayerNorm(long dim, double eps, boolean affine) {
            this.dim = dim;
            this.eps = eps;
            this.weight = affine ? param("weight", Init.ones(dim)) : null;
            this.bias = affine ? param("bias", Init.zeros(dim)) : null;
        }

        @Override
        public Tensor forward(Tensor x) {
            return torch.layer_norm(x, new long[] {dim}, Tensors.opt(weight), Tensors.opt(bias), eps, true);
        }
    }

    /** Nearest-neighbour 2x upsampling, as {@code nn.Upsample(scale_factor=2)}. */
    public static Tensor upsample2x(Tensor x) {
        return torch.upsample_nearest2d(x, new long[] {x.size(2) * 2, x.size(3) * 2});
    }
}
