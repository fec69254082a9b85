package org.pixelpost.nn;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Tensors;

/**
 * A tree of named parameters. State-dict keys are the dotted paths of the tree, so a model
 * written in the reference layout loads its checkpoints without a translation table.
 */
public abstract class Module implements AutoCloseable {
    private final Map<String, Tensor> params = new LinkedHashMap<>();
    private final Map<String, Module> children = new LinkedHashMap<>();

    protected Module() {
        Engine.start();
    }

    private boolean checkpointing;

    /**
     * Gradient checkpointing for this module and its descendants: the segments a forward wraps in
     * {@link #checkpoint} keep only their outputs and are recomputed in the backward (less memory,
     * more time). Off by default.
     */
    public Module gradientCheckpointing(boolean on) {
        checkpointing = on;
        children.values().forEach(c -> c.gradientCheckpointing(on));
        return this;
    }

    public boolean gradientCheckpointing() {
        return checkpointing;
    }

    /** {@code fn(inputs)}: a plain call, or a recomputed segment while gradient checkpointing is on (see {@link Checkpoint}). */
    public Tensor checkpoint(java.util.function.Function<Tensor[], Tensor> fn, Tensor... inputs) {
        return Checkpoint.call(checkpointing, fn, inputs);
    }

    /** Registers a parameter; it outlives every {@link org.pixelpost.tensor.Scope}. */
    protected Tensor param(String name, Tensor value) {
        value.retainReference();
        value.set_requires_grad(true);
        params.put(name, value);
        return value;
    }

    /** Registers a child under {@code name}; a null child (an optional part left out) registers nothing. */
    protected <M extends Module> M add(String name, M child) {
        if (child != null) children.put(name, child);
        return child;
    }

    /** The descendant at a dotted path ({@code "blocks.0.attn"}), or null. */
    public Module child(String path) {
        return modules().get(path);
    }

    /** Every descendant module by its dotted path, parents before children. */
    public Map<String, Module> modules() {
        Map<String, Module> out = new LinkedHashMap<>();
        children.forEach((k, c) -> {
            out.put(k, c);
            c.modules().forEach((kk, cc) -> out.put(k + "." + kk, cc));
        });
        return out;
    }

    /**
     * Marks exactly the parameters whose key {@code select} accepts as trainable (gradients on);
     * every other parameter is frozen. Returns how many parameters are trainable.
     */
    public long trainable(java.util.function.Predicate<String> select) {
        long n = 0;
        for (Map.Entry<String, Tensor> e : parameters().entrySet()) {
            boolean on = select.test(e.getKey());
            e.getValue().set_requires_grad(on);
            if (on) n += e.getValue().numel();
        }
        return n;
    }

    /** The parameters that take gradients, by key: what an optimizer, EMA and checkpoints hold. */
    public Map<String, Tensor> trainableParameters() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        parameters().forEach((k, v) -> { if (v.requires_grad()) out.put(k, v); });
        return out;
    }

    /** Every parameter by its dotted key, in registration order. */
    public Map<String, Tensor> parameters() {
        Map<String, Tensor> out = new LinkedHashMap<>();
        collect("", out);
        return out;
    }

    private void collect(String prefix, Map<String, Tensor> out) {
        params.forEach((k, v) -> out.put(prefix + k, v));
        children.forEach((k, c) -> c.collect(prefix + k + ".", out));
    }

    /**
     * A digest of the weights (names, shapes, and each tensor's sum and sum of squares): two models
     * of one architecture with different weights get different digests. Cheap: one pass over the weights.
     */
    public String fingerprint() {
        // on one libtorch thread: a sum split over other thread counts rounds differently, and the digest
        // keys caches that processes with any thread count share
        java.util.concurrent.ExecutorService one = org.pixelpost.tensor.Engine.threadPool(1, 1, "fingerprint");
        try {
            return org.pixelpost.tensor.Engine.awaitAll(List.of(one.submit(this::digest))).get(0);
        } finally {
            one.shutdownNow();
        }
    }

    private String digest() {
        java.security.MessageDigest md;
        try {
            md = java.security.MessageDigest.getInstance("SHA-256");
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        try (NoGradGuard g = Tensors.noGrad()) {
            for (Map.Entry<String, Tensor> e : parameters().entrySet()) {
                try (org.pixelpost.tensor.Scope s = org.pixelpost.tensor.Scope.open()) { // one parameter's copy at a time
                    Tensor d = e.getValue().to(org.bytedeco.pytorch.global.torch.ScalarType.Double);
                    md.update((e.getKey() + java.util.Arrays.toString(Tensors.shape(d)) + Tensors.item(d.sum()) + "|" + Tensors.item(d.square().sum()))
                        .getBytes(java.nio.charset.StandardCharsets.UTF_8));
                }
            }
        }
        return java.util.HexFormat.of().formatHex(md.digest(), 0, 8);
    }

    public long parameterCount() {
        return parameters().values().stream().mapToLong(Tensor::numel).sum();
    }

    /** Converts every parameter to {@code dtype} in place (the tensors keep their identity). */
    public void to(org.bytedeco.pytorch.global.torch.ScalarType dtype) {
        try (NoGradGuard g = Tensors.noGrad()) {
            for (Tensor p : parameters().values()) p.set_data(p.to(dtype));
        }
    }

    /**
     * Moves every parameter to {@code device}. The parameter objects the modules hold are reassigned
     * in place, so every holder sees the moved tensor (a leaf with the same {@code requires_grad}).
     */
    public void to(org.bytedeco.pytorch.Device device) {
        try (NoGradGuard g = Tensors.noGrad(); org.pixelpost.tensor.Scope s = org.pixelpost.tensor.Scope.open()) {
            for (Tensor p : parameters().values()) {
                if (Tensors.isOn(p, device)) continue;
                boolean grad = p.requires_grad();
                Tensor moved = p.detach().to(device, p.scalar_type());
                p.put(moved);
                p.set_requires_grad(grad);
            }
        }
    }

    /** Stops gradients into the parameters; gradients still flow through to the inputs. */
    public void freeze() {
        for (Tensor p : parameters().values()) p.set_requires_grad(false);
    }

    /**
     * Copies {@code state} into the parameters (converting dtype). Every parameter must be
     * present with its shape, and no key may be left over.
     */
    public void load(Map<String, Tensor> state, Path source) throws BadFileException {
        Map<String, Tensor> mine = parameters();
        List<String> missing = new ArrayList<>(), unexpected = new ArrayList<>(), wrong = new ArrayList<>();
        for (String k : mine.keySet()) if (!state.containsKey(k)) missing.add(k);
        for (String k : state.keySet()) if (!mine.containsKey(k)) unexpected.add(k);
        for (Map.Entry<String, Tensor> e : mine.entrySet()) {
            Tensor src = state.get(e.getKey());
            if (src != null && !Arrays.equals(Tensors.shape(src), Tensors.shape(e.getValue())))
                wrong.add(e.getKey() + " " + Arrays.toString(Tensors.shape(src)) + " != " + Arrays.toString(Tensors.shape(e.getValue())));
            else if (src != null && !src.is_floating_point())
                // an integer tensor where a weight belongs: a quantised or foreign file, not weights to convert
                throw new BadFileException(source, "weight " + e.getKey() + " is stored as " + src.scalar_type().toString().toLowerCase(java.util.Locale.ROOT)
                    + ", not as floating point (fp32, fp16 or bf16): not a model PixelPost reads");
        }
        if (!missing.isEmpty() || !unexpected.isEmpty() || !wrong.isEmpty()) {
            StringBuilder b = new StringBuilder("does not fit " + getClass().getSimpleName() + ":");
            if (!missing.isEmpty()) b.append(" missing ").append(missing.size()).append(" keys ").append(head(missing)).append(';');
            if (!unexpected.isEmpty()) b.append(" unexpected ").append(unexpected.size()).append(" keys ").append(head(unexpected)).append(';');
            if (!wrong.isEmpty()) b.append(" wrong shapes ").append(head(wrong));
            throw new BadFileException(source, b.toString());
        }
        try (NoGradGuard g = Tensors.noGrad()) {
            for (Map.Entry<String, Tensor> e : mine.entrySet()) {
                Tensor p = e.getValue(), src = state.get(e.getKey());
                if (!p.is_meta()) {
                    p.copy_(src);
                    continue;
                }
                // built on the meta device (see Init): the parameter becomes a copy of the stored tensor, in the layout it was built in
                boolean grad = p.requires_grad();
                org.bytedeco.pytorch.MemoryFormatOptional format = new org.bytedeco.pytorch.MemoryFormatOptional(p.dim() == 4
                    && p.is_contiguous(org.bytedeco.pytorch.global.torch.MemoryFormat.ChannelsLast) && !p.is_contiguous()
                    ? org.bytedeco.pytorch.global.torch.MemoryFormat.ChannelsLast : org.bytedeco.pytorch.global.torch.MemoryFormat.Contiguous);
                try (org.pixelpost.tensor.Scope s = org.pixelpost.tensor.Scope.open()) {
                    p.put(src.to(p.scalar_type()).clone(format));
                }
                p.set_requires_grad(grad);
            }
        }
    }

    /** {@code m} with {@code state} loaded into it; on failure {@code m} is closed and the error passed on. */
    public static <M extends Module> M loaded(M m, Map<String, Tensor> state, Path source) throws BadFileException {
        try {
            m.load(state, source);
            return m;
        } catch (BadFileException | RuntimeException e) {
            m.close();
            throw e;
        }
    }

    /** Frees the parameters' native memory now; the module is unusable afterwards. */
    @Override
    public void close() {
        for (Tensor p : parameters().values()) p.releaseReference();
        params.clear();
        children.clear();
    }

    private static String head(List<String> keys) {
        return keys.size() <= 5 ? keys.toString() : keys.subList(0, 5) + "...";
    }
}
