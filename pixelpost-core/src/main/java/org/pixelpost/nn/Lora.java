package org.pixelpost.nn;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import org.bytedeco.pytorch.GradMode;
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
 *
 * <p>Shapes follow the files other tools write: for a linear layer {@code A [r, in]} and
 * {@code B [out, r]}; for a convolution A is a convolution of the base's kernel, stride and padding
 * to r channels {@code [r, in, kh, kw]} and B a 1x1 back {@code [out, r, 1, 1]}.
 */
public final class Lora {
    private Lora() {}

    /** An adapter's weights, rank, alpha, dropout and switch. */
    public static final class Weights {
        final Tensor a, b;
        final int rank;
        final double alpha, dropout;
        boolean on = true;
        final Generator dropoutGen;

        Weights(Tensor a, Tensor b, double alpha, double dropout, long seed) {
            this.a = a;
            this.b = b;
            this.rank = (int) a.size(0);
            this.alpha = alpha;
            this.dropout = dropout;
            this.dropoutGen = dropout > 0 ? Generator.seeded(seed) : null;
        }

        /** Inverted dropout on the adapter's input, while training (gradients on) only; masks from the adapter's own generator. */
        Tensor drop(Tensor x) {
            if (dropout == 0 || !GradMode.is_enabled()) return x;
            Tensor keep = dropoutGen.rand(Tensors.shape(x)).ge(Tensors.s(dropout)).to(x.scalar_type());
            return x.mul(keep).div(Tensors.s(1 - dropout));
        }
    }

    /** What the linear and convolution adapters share. */
    public interface Adapter {
        Weights lora();

        /** The base layer's weight, which a merge adds to. */
        Tensor baseWeight();

        /** A, {@code [r, in]} or {@code [r, in, kh, kw]}. */
        default Tensor down() { return lora().a; }

        /** B, {@code [out, r]} or {@code [out, r, 1, 1]}. */
        default Tensor up() { return lora().b; }

        default int rank() { return lora().rank; }

        default double alpha() { return lora().alpha; }

        /** {@code alpha / rank}. */
        default double scale() { return alpha() / rank(); }

        default void enabled(boolean on) { lora().on = on; }

        default boolean enabled() { return lora().on; }
    }

    /** A linear layer with an adapter: {@code x W^T + b + scale * (x A^T) B^T}. */
    public static final class LoraLinear extends Linear implements Adapter {
        private final Weights lora;

        LoraLinear(Linear base, Tensor a, Tensor b, double alpha, double dropout, long seed) {
            super(base);
            lora = new Weights(param("lora_A.weight", a), param("lora_B.weight", b), alpha, dropout, seed);
        }

        @Override
        public Tensor forward(Tensor x) {
            Tensor y = super.forward(x);                                          // [..., out]
            if (!lora.on) return y;
            Tensor h = torch.linear(lora.drop(x), lora.a, Tensors.opt(null));     // [..., r]
            return y.add(torch.linear(h, lora.b, Tensors.opt(null)).mul(Tensors.s(scale())));
        }

        @Override public Weights lora() { return lora; }
        @Override public Tensor baseWeight() { return weight; }
    }

    /** A convolution with an adapter: A a convolution like the base's to r channels, B a 1x1 back. */
    public static final class LoraConv2d extends Conv2d implements Adapter {
        private final Weights lora;

        LoraConv2d(Conv2d base, Tensor a, Tensor b, double alpha, double dropout, long seed) {
            super(base);
            // A channels-last, as every kernel (see Layers.conv2d)
            lora = new Weights(param("lora_A.weight", a.contiguous(torch.MemoryFormat.ChannelsLast)), param("lora_B.weight", b), alpha, dropout, seed);
        }

        @Override
        public Tensor forward(Tensor x) {
            Tensor y = super.forward(x);                                          // [B, out, H', W']
            if (!lora.on) return y;
            Tensor h = Layers.conv2d(lora.drop(x), lora.a, null, stride(), padding()); // [B, r, H', W']
            return y.add(Layers.conv2d(h, lora.b, null, 1, 0).mul(Tensors.s(scale())));   // [B, out, H', W']
        }

        @Override public Weights lora() { return lora; }
        @Override public Tensor baseWeight() { return weight; }
    }

    /** The shapes of A and B for a rank-{@code r} adapter on {@code layer}, or null for a layer that takes none. */
    public static long[][] shapes(Module layer, int r) {
        if (layer instanceof Linear l) return new long[][] {{r, l.weight.size(1)}, {l.weight.size(0), r}};
        if (layer instanceof Conv2d c) {
            Tensor w = c.weight;
            return new long[][] {{r, w.size(1), w.size(2), w.size(3)}, {w.size(0), r, 1, 1}};
        }
        return null;
    }

    /**
     * Puts a fresh adapter on every linear layer and convolution of {@code root} whose path
     * {@code target} accepts (A kaiming-uniform as PEFT initialises it, B zero), makes the adapters
     * the only trainable parameters, and returns their paths.
     */
    public static List<String> attach(Module root, Predicate<String> target, int rank, double alpha, double dropout, Generator g) {
        if (rank < 1) throw new IllegalArgumentException("the LoRA rank must be at least 1, not " + rank);
        if (!(dropout >= 0 && dropout < 1)) throw new IllegalArgumentException("the LoRA dropout must be in [0, 1), not " + dropout);
        List<String> done = new ArrayList<>();
        if (root.modules().entrySet().stream().noneMatch(e -> !(e.getValue() instanceof Adapter) && shapes(e.getValue(), 1) != null && target.test(e.getKey())))
            throw new NoTargetException();
        for (Map.Entry<String, Module> e : new ArrayList<>(root.modules().entrySet())) {
            Module m = e.getValue();
            long[][] shapes = shapes(m, rank);
            if (m instanceof Adapter || shapes == null || !target.test(e.getKey())) continue;
            long fanIn = 1;
            for (int i = 1; i < shapes[0].length; i++) fanIn *= shapes[0][i];
            double bound = Math.sqrt(6.0 / ((1 + 5) * fanIn));
            Tensor a, b;
            try (var ng = Tensors.noGrad()) {
                a = g.rand(shapes[0]).mul(Tensors.s(2 * bound)).sub(Tensors.s(bound));
                b = torch.zeros(shapes[1]);
            }
            wrap(root, e.getKey(), a, b, alpha, dropout, Generator.mix(done.size(), 0x10AAL));
            done.add(e.getKey());
        }
        root.trainable(k -> k.contains(".lora_A.") || k.contains(".lora_B."));
        return done;
    }

    /**
     * Puts an adapter with the given A, B and alpha on the layer at {@code path} (a copy of them).
     * The caller checks the shapes against {@link #shapes}; the parameters' trainability is left as it was.
     */
    public static void attach(Module root, String path, Tensor down, Tensor up, double alpha) {
        Module m = root.modules().get(path);
        if (m == null || m instanceof Adapter || shapes(m, 1) == null)
            throw new IllegalArgumentException(path + " is not a linear layer or convolution without an adapter");
        long[][] want = shapes(m, (int) down.size(0));
        try (var ng = Tensors.noGrad()) {
            // a linear layer's [r, in] and a 1x1 convolution's [r, in, 1, 1] hold the same numbers
            wrap(root, path, down.to(torch.ScalarType.Float).reshape(want[0]).clone(), up.to(torch.ScalarType.Float).reshape(want[1]).clone(), alpha, 0, 0);
        }
    }

    /** Replaces the layer at {@code path} by its adapter; the base weights keep their trainability, A and B are trainable. */
    private static void wrap(Module root, String path, Tensor a, Tensor b, double alpha, double dropout, long seed) {
        Module m = root.modules().get(path);
        Map<Tensor, Boolean> was = new java.util.IdentityHashMap<>();
        m.parameters().values().forEach(p -> was.put(p, p.requires_grad()));
        Module wrapped = m instanceof Linear l ? new LoraLinear(l, a, b, alpha, dropout, seed) : new LoraConv2d((Conv2d) m, a, b, alpha, dropout, seed);
        was.forEach((p, on) -> p.set_requires_grad(on));
        root.replace(path, wrapped).close(); // the adapter holds the base weights now
    }

    /** No linear layer or convolution matches the targets (nothing was changed). */
    public static final class NoTargetException extends IllegalArgumentException {
        NoTargetException() {
            super("no linear layer or convolution matches the LoRA targets");
        }
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

    /**
     * Reseeds the dropout masks of {@code adapters} (in their order, as {@link #adapters} gives them);
     * the trainer does this from (seed, step, micro-batch), so a resumed run draws the same masks.
     */
    public static void reseedDropout(java.util.Collection<Adapter> adapters, long seed) {
        int i = 0;
        for (Adapter a : adapters) {
            if (a.lora().dropoutGen != null) a.lora().dropoutGen.reseed(Generator.mix(seed, i));
            i++;
        }
    }

    /** {@code scale * B A} in the base weight's shape. */
    public static Tensor delta(Tensor weight, Tensor down, Tensor up, double scale) {
        Tensor d = weight.dim() == 2 ? up.flatten(1, -1).matmul(down.flatten(1, -1))
            : up.flatten(1, -1).matmul(down.flatten(1, -1)).reshape(weight.size(0), weight.size(1), weight.size(2), weight.size(3));
        return d.mul(Tensors.s(scale)).to(weight.scalar_type());
    }

    /** Adds each adapter's {@code scale * B A} into its base weight and switches the adapter off. */
    public static void merge(Module root) {
        try (var g = Tensors.noGrad()) {
            for (Adapter a : adapters(root).values()) {
                if (!a.enabled()) continue;
                a.baseWeight().add_(delta(a.baseWeight(), a.down(), a.up(), a.scale()));
                a.enabled(false);
            }
        }
    }
}
