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
 * Low-rank adapters: {@code W + (alpha / r) B A} on linear layers and convolutions. Each such
 * layer has a slot for one adapter ({@link Layers.Adaptable}); attaching fills the slots of the
 * layers a name pattern selects (the tree's keys do not change: the base weights keep theirs, the
 * adapter adds {@code lora_A.weight} and {@code lora_B.weight} under the same path). B starts at
 * zero, so a model with fresh adapters computes exactly what it computed before.
 *
 * <p>Shapes follow the files other tools write: for a linear layer {@code A [r, in]} and
 * {@code B [out, r]}; for a convolution A is a convolution of the base's kernel, stride and padding
 * to r channels {@code [r, in, kh, kw]} and B a 1x1 back {@code [out, r, 1, 1]}.
 */
public final class Lora {
    private Lora() {}

    /** One layer's adapter: A, B, alpha, dropout on its input, and a switch. */
    public static final class Adapter {
        private final Tensor a, b, base;
        private final double alpha, dropout;
        private boolean on = true;
        private Generator dropoutDraws;

        Adapter(Tensor base, Tensor a, Tensor b, double alpha, double dropout) {
            this.base = base;
            this.a = a;
            this.b = b;
            this.alpha = alpha;
            this.dropout = dropout;
        }

        /** Inverted dropout on the adapter's input, while training (gradients on) only; masks from the generator {@link #dropoutFrom} gave. */
        Tensor drop(Tensor x) {
            if (dropout == 0 || !GradMode.is_enabled()) return x;
            if (dropoutDraws == null) throw new IllegalStateException("LoRA dropout " + dropout + " without a generator: call Lora.dropoutFrom(adapters, generator) first");
            Tensor keep = dropoutDraws.rand(Tensors.shape(x)).ge(Tensors.s(dropout)).to(x.scalar_type());
            return x.mul(keep).div(Tensors.s(1 - dropout));
        }

        /** The base layer's weight, which a merge adds to. */
        public Tensor baseWeight() { return base; }

        /** A, {@code [r, in]} or {@code [r, in, kh, kw]}. */
        public Tensor down() { return a; }

        /** B, {@code [out, r]} or {@code [out, r, 1, 1]}. */
        public Tensor up() { return b; }

        public int rank() { return (int) a.size(0); }

        public double alpha() { return alpha; }

        public double dropout() { return dropout; }

        /** {@code alpha / rank}. */
        public double scale() { return alpha / rank(); }

        public void enabled(boolean on) { this.on = on; }

        public boolean enabled() { return on; }
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
        checkOptions(rank, alpha, dropout);
        List<String> done = new ArrayList<>();
        if (root.modules().entrySet().stream().noneMatch(e -> free(e.getValue()) && target.test(e.getKey())))
            throw new NoTargetException();
        for (Map.Entry<String, Module> e : new ArrayList<>(root.modules().entrySet())) {
            Module m = e.getValue();
            long[][] shapes = shapes(m, rank);
            if (!free(m) || !target.test(e.getKey())) continue;
            long fanIn = 1;
            for (int i = 1; i < shapes[0].length; i++) fanIn *= shapes[0][i];
            double bound = Math.sqrt(6.0 / ((1 + 5) * fanIn));
            Tensor a, b;
            try (var ng = Tensors.noGrad()) {
                a = g.rand(shapes[0]).mul(Tensors.s(2 * bound)).sub(Tensors.s(bound));
                b = torch.zeros(shapes[1]);
            }
            fill((Layers.Adaptable) m, a, b, alpha, dropout);
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
        if (!free(m)) throw new IllegalArgumentException(path + " is not a linear layer or convolution without an adapter");
        long[][] want = shapes(m, (int) down.size(0));
        try (var ng = Tensors.noGrad()) {
            // a linear layer's [r, in] and a 1x1 convolution's [r, in, 1, 1] hold the same numbers
            fill((Layers.Adaptable) m, down.to(torch.ScalarType.Float).reshape(want[0]).clone(), up.to(torch.ScalarType.Float).reshape(want[1]).clone(), alpha, 0);
        }
    }

    /** The rules for fresh adapters, by the training options' names: rank at least 1, alpha not negative, dropout in [0, 1). */
    public static void checkOptions(int rank, double alpha, double dropout) {
        org.pixelpost.io.check.Checks.atLeast("lora_rank", rank, 1);
        org.pixelpost.io.check.Checks.nonNegative("lora_alpha", alpha);
        org.pixelpost.io.check.Checks.inHalfOpen("lora_dropout", dropout, 0, 1);
    }

    /** Whether {@code m} is a layer with an empty adapter slot. */
    private static boolean free(Module m) {
        return m instanceof Layers.Adaptable l && l.adapter() == null;
    }

    /** Fills the layer's slot; the base weights keep their trainability. */
    private static void fill(Layers.Adaptable layer, Tensor a, Tensor b, double alpha, double dropout) {
        // channels-last A for a convolution, as every kernel (see Layers.conv2d)
        Tensor down = a.dim() == 4 ? a.contiguous(torch.MemoryFormat.ChannelsLast) : a;
        layer.adapter(new Adapter(layer.weight, down, b, alpha, dropout));
    }

    /** No linear layer or convolution matches the targets (nothing was changed). */
    public static final class NoTargetException extends IllegalArgumentException {
        NoTargetException() {
            super("no linear layer or convolution matches the LoRA targets");
        }
    }

    /** The adapters of {@code root} by the path of their layer. */
    public static Map<String, Adapter> adapters(Module root) {
        Map<String, Adapter> out = new LinkedHashMap<>();
        root.modules().forEach((k, m) -> {
            if (m instanceof Layers.Adaptable l && l.adapter() != null) out.put(k, l.adapter());
        });
        return out;
    }

    /** Switches every adapter of {@code root} on or off (off: the base model exactly). */
    public static void enable(Module root, boolean on) {
        for (Adapter a : adapters(root).values()) a.enabled(on);
    }

    /**
     * Where the dropout masks of {@code adapters} are drawn from: the trainer gives each
     * micro-batch's generator (reseeded from seed, step and slot), so the masks are part of the
     * step's draws and a resumed run draws the same ones.
     */
    public static void dropoutFrom(java.util.Collection<Adapter> adapters, Generator g) {
        for (Adapter a : adapters) a.dropoutDraws = g;
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
