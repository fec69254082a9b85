package org.pixelpost.nn;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.nn.Layers.Conv2d;
import org.pixelpost.nn.Layers.Linear;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Tensors;

/**
 * Low-rank adapters: {@code W + (alpha / r) B A} on linear layers and convolutions, attached in
 * place of the layers a name pattern selects (the tree's keys do not change: the base weights keep
 * theirs, the adapter adds {@code lora_A.weight} and {@code lora_B.weight} under the same path).
 * B starts at zero, so a model with fresh adapters computes exactly what it computed before.
 */
public final class Lora {
    private Lora() {}

    /** The common part of the linear and convolution adapters. */
    public interface Adapter {
        Tensor down();

        Tensor up();

        int rank();

        double alpha();

        /** {@code alpha / rank}. */
        default double scale() {
            return alpha() / rank();
        }

        void enabled(boolean on);

        boolean enabled();
    }

    /** A linear layer with an adapter: {@code x W^T + b + scale * (x A^T) B^T}. */
    public static final class LoraLinear extends Linear implements Adapter {
        private final Tensor a, b;
        private final int rank;
        private final double alpha, dropout;
        private boolean on = true;

        LoraLinear(Linear base, int rank, double alpha, double dropout, Generator g) {
            super(base);
            this.rank = rank;
            this.alpha = alpha;
            this.dropout = dropout;
            long in = base.weight.size(1), out = base.weight.size(0);
            try (var ng = Tensors.noGrad()) {
                // kaiming-uniform A, as PEFT initialises it; B zero
                double bound = Math.sqrt(6.0 / ((1 + 5) * in));
                a = param("lora_A.weight", g.rand(rank, in).mul(Tensors.s(2 * bound)).sub(Tensors.s(bound)));
                b = param("lora_B.weight", torch.zeros(out, rank));
            }
        }

        @Override
        public Tensor forward(Tensor x) {
            Tensor y = super.forward(x);
            if (!on) return y;
            Tensor h = dropout > 0 && org.bytedeco.pytorch.GradMode.is_enabled() ? torch.dropout(x, dropout, true) : x;
            return y.add(torch.linear(torch.linear(h, a, Tensors.opt(null)), b, Tensors.opt(null)).mul(Tensors.s(alpha / rank)));
        }

        @Override public Tensor down() { return a; }
        @Override public Tensor up() { return b; }
        @Override public int rank() { return rank; }
        @Override public double alpha() { return alpha; }
        @Override public void enabled(boolean v) { on = v; }
        @Override public boolean enabled() { return on; }
    }

    /** A convolution with an adapter: A a convolution of the base's kernel, stride and padding to r channels, B a 1x1 back. */
    public static final class LoraConv2d extends Conv2d implements Adapter {
        private final Tensor a, b;
        private final int rank;
        private final double alpha;
        private boolean on = true;

        LoraConv2d(Conv2d base, int rank, double alpha, Generator g) {
            super(base);
            this.rank = rank;
            this.alpha = alpha;
            long out = base.weight.size(0), in = base.weight.size(1), kh = base.weight.size(2), kw = base.weight.size(3);
            try (var ng = Tensors.noGrad()) {
                double bound = Math.sqrt(6.0 / ((1 + 5) * in * kh * kw));
                a = param("lora_A.weight", g.rand(rank, in, kh, kw).mul(Tensors.s(2 * bound)).sub(Tensors.s(bound)));
                b = param("lora_B.weight", torch.zeros(out, rank, 1, 1));
            }
        }

        @Override
        public Tensor forward(Tensor x) {
            Tensor y = super.forward(x);
            if (!on) return y;
            Tensor h = torch.conv2d(x, a, Tensors.opt(null), new long[] {stride(), stride()}, new long[] {padding(), padding()}, new long[] {1, 1}, 1);
            return y.add(torch.conv2d(h, b, Tensors.opt(null), new long[] {1, 1}, new long[] {0, 0}, new long[] {1, 1}, 1).mul(Tensors.s(alpha / rank)));
        }

        @Override public Tensor down() { return a; }
        @Override public Tensor up() { return b; }
        @Override public int rank() { return rank; }
        @Override public double alpha() { return alpha; }
        @Override public void enabled(boolean v) { on = v; }
        @Override public boolean enabled() { return on; }
    }

    /**
     * Puts an adapter on every linear layer and convolution of {@code root} whose path {@code target}
     * accepts, makes the adapters the only trainable parameters, and returns their paths.
     */
    public static List<String> attach(Module root, Predicate<String> target, int rank, double alpha, double dropout, Generator g) {
        if (rank < 1) throw new IllegalArgumentException("--lora-rank must be at least 1");
        List<String> done = new ArrayList<>();
        for (Map.Entry<String, Module> e : new ArrayList<>(root.modules().entrySet())) {
            Module m = e.getValue();
            if (m instanceof Adapter || !target.test(e.getKey())) continue;
            Module wrapped = m instanceof Linear l ? new LoraLinear(l, rank, alpha, dropout, g)
                : m instanceof Conv2d c ? new LoraConv2d(c, rank, alpha, g) : null;
            if (wrapped == null) continue;
            root.replace(e.getKey(), wrapped).close(); // the adapter holds the base weights now
            done.add(e.getKey());
        }
        if (done.isEmpty()) throw new IllegalArgumentException("no linear layer or convolution matches the LoRA targets");
        root.trainable(k -> k.contains(".lora_A.") || k.contains(".lora_B."));
        return done;
    }

    /** The adapters of {@code root} by path. */
    public static Map<String, Adapter> adapters(Module root) {
        Map<String, Adapter> out = new LinkedHashMap<>();
        root.modules().forEach((k, m) -> {
            if (m instanceof Adapter a) out.put(k, a);
        });
        return out;
    }

    /** Switches every adapter of {@code root} on or off (off: the base model exactly). */
    public static void enable(Module root, boolean on) {
        for (Adapter a : adapters(root).values()) a.enabled(on);
    }

    /** Adds each adapter's {@code scale * B A} into its base weight and switches the adapter off. */
    public static void merge(Module root) {
        try (var g = Tensors.noGrad()) {
            for (Adapter a : adapters(root).values()) {
                Tensor w = a instanceof LoraLinear l ? l.weight : ((LoraConv2d) a).weight;
                Tensor delta = a instanceof LoraLinear
                    ? a.up().matmul(a.down())
                    : a.up().flatten(1, -1).matmul(a.down().flatten(1, -1)).reshape(w.size(0), w.size(1), w.size(2), w.size(3));
                w.add_(delta.mul(Tensors.s(a.scale())));
                a.enabled(false);
            }
        }
    }
}
