package org.pixelpost.nn;

import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.tensor.Tensors;

/** The parameterised layers the models are built from, initialised as PyTorch initialises them. */
public final class Layers {
    private Layers() {}

    /** Uniform in [-bound, bound]: PyTorch's default for conv and linear weights is bound = 1/sqrt(fan_in). */
    static Tensor uniform(double bound, long... shape) {
        try (var g = Tensors.noGrad()) {
            Tensor t = torch.rand(shape);
            t.mul_(Tensors.s(2 * bound)).sub_(Tensors.s(bound)); // in place: a large model's initialisation leaves no garbage behind
            return t;
        }
    }

    public static class Conv2d extends Module implements Layer {
        public final Tensor weight, bias;
        private final long stride, padding;

        public Conv2d(long in, long out, long kernel, long stride, long padding, boolean bias) {
            double bound = 1 / Math.sqrt(in * kernel * kernel);
            this.weight = param("weight", uniform(bound, out, in, kernel, kernel));
            this.bias = bias ? param("bias", uniform(bound, out)) : null;
            this.stride = stride;
            this.padding = padding;
        }

        /** A convolution over existing weights (shared, not copied): how an adapter wraps a layer. */
        protected Conv2d(Conv2d base) {
            this.weight = param("weight", base.weight);
            this.bias = base.bias == null ? null : param("bias", base.bias);
            this.stride = base.stride;
            this.padding = base.padding;
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
        public Tensor forward(Tensor x) {
            return torch.conv2d(x, weight, Tensors.opt(bias), new long[] {stride, stride},
                new long[] {padding, padding}, new long[] {1, 1}, 1);
        }
    }

    public static class Linear extends Module implements Layer {
        public final Tensor weight, bias;

        public Linear(long in, long out, boolean bias) {
            double bound = 1 / Math.sqrt(in);
            this.weight = param("weight", uniform(bound, out, in));
            this.bias = bias ? param("bias", uniform(bound, out)) : null;
        }

        public Linear(long in, long out) {
            this(in, out, true);
        }

        /** A linear layer over existing weights (shared, not copied): how an adapter wraps a layer. */
        protected Linear(Linear base) {
            this.weight = param("weight", base.weight);
            this.bias = base.bias == null ? null : param("bias", base.bias);
        }

        @Override
        public Tensor forward(Tensor x) {
            return torch.linear(x, weight, Tensors.opt(bias));
        }
    }

    public static final class GroupNorm extends Module implements Layer {
        public final Tensor weight, bias;
        private final long groups;
        private final double eps;

        public GroupNorm(long groups, long channels, double eps) {
            this.groups = groups;
            this.eps = eps;
            this.weight = param("weight", torch.ones(channels));
            this.bias = param("bias", torch.zeros(channels));
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
            this.weight = affine ? param("weight", torch.ones(dim)) : null;
            this.bias = affine ? param("bias", torch.zeros(dim)) : null;
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
