package org.pixelpost.model;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.io.BadFileException;
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

    /** Registers a parameter; it outlives every {@link org.pixelpost.tensor.Scope}. */
    protected Tensor param(String name, Tensor value) {
        value.retainReference();
        value.set_requires_grad(true);
        params.put(name, value);
        return value;
    }

    protected <M extends Module> M add(String name, M child) {
        children.put(name, child);
        return child;
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

    public long parameterCount() {
        return parameters().values().stream().mapToLong(Tensor::numel).sum();
    }

    /** Converts every parameter to {@code dtype} in place (the tensors keep their identity). */
    public void to(org.bytedeco.pytorch.global.torch.ScalarType dtype) {
        try (NoGradGuard g = Tensors.noGrad()) {
            for (Tensor p : parameters().values()) p.set_data(p.to(dtype));
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
        }
        if (!missing.isEmpty() || !unexpected.isEmpty() || !wrong.isEmpty()) {
            StringBuilder b = new StringBuilder("does not fit " + getClass().getSimpleName() + ":");
            if (!missing.isEmpty()) b.append(" missing ").append(missing.size()).append(" keys ").append(head(missing)).append(';');
            if (!unexpected.isEmpty()) b.append(" unexpected ").append(unexpected.size()).append(" keys ").append(head(unexpected)).append(';');
            if (!wrong.isEmpty()) b.append(" wrong shapes ").append(head(wrong));
            throw new BadFileException(source, b.toString());
        }
        try (NoGradGuard g = Tensors.noGrad()) {
            for (Map.Entry<String, Tensor> e : mine.entrySet()) e.getValue().copy_(state.get(e.getKey()));
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
