package org.pixelpost.train;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorOptions;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.tensor.Tensors;

/**
 * The trainable parameters laid end to end in one float32 buffer and their gradients in another:
 * every parameter, and its {@code .grad}, is a view into its buffer. Optimizer updates, the EMA,
 * clipping and gradient averaging then run as a handful of operations over one long tensor (on
 * every core, with no call per parameter), as PyTorch's multi-tensor optimizers and DDP's
 * gradient buckets do. Backward accumulates into the views in place.
 *
 * <p>Since every gradient exists from the start, a parameter that takes no part in a step has a
 * zero gradient that step (its moments decay and weight decay applies), as under DDP.
 */
public final class FlatParameters implements AutoCloseable {
    private final Map<String, Tensor> params;
    private final Map<String, long[]> slots = new LinkedHashMap<>(); // offset, then shape
    private final Tensor data, grad;

    /** Moves {@code params} (float32, on one device) into the buffer; their values, shapes and identities stay. */
    public FlatParameters(Map<String, Tensor> params) {
        if (params.isEmpty()) throw new IllegalArgumentException("no parameters to lay out");
        this.params = params;
        long n = 0;
        Tensor first = params.values().iterator().next();
        for (Map.Entry<String, Tensor> e : params.entrySet()) {
            Tensor p = e.getValue();
            if (p.scalar_type().intern() != torch.ScalarType.Float)
                throw new IllegalArgumentException("parameter " + e.getKey() + " is " + p.scalar_type().intern() + "; the optimizer keeps float32 weights");
            if (!p.device().str().getString().equals(first.device().str().getString()))
                throw new IllegalArgumentException("parameter " + e.getKey() + " is on " + p.device().str().getString() + ", the others on " + first.device().str().getString());
            long[] shape = Tensors.shape(p);
            long[] slot = new long[shape.length + 1];
            slot[0] = n;
            System.arraycopy(shape, 0, slot, 1, shape.length);
            slots.put(e.getKey(), slot);
            n += p.numel();
        }
        data = keep(torch.zeros(new long[] {n}, new TensorOptions(torch.ScalarType.Float)).to(first.device(), torch.ScalarType.Float));
        grad = keep(torch.zeros_like(data));
        try (var g = Tensors.noGrad(); var s = org.pixelpost.tensor.Scope.open()) {
            for (Map.Entry<String, Tensor> e : params.entrySet()) {
                Tensor p = e.getValue(), view = view(data, e.getKey());
                view.copy_(p);
                p.set_data(view);                          // the parameter now lives in the buffer
                p.mutable_grad().put(view(grad, e.getKey())); // and backward accumulates into this view
            }
        }
    }

    private static Tensor keep(Tensor t) {
        t.retainReference();
        return t;
    }

    /** The parameters, in their order in the buffer. */
    public Map<String, Tensor> parameters() {
        return params;
    }

    /** All parameters as one flat float32 tensor (writes go to the parameters). */
    public Tensor data() {
        return data;
    }

    /** All gradients as one flat float32 tensor (writes go to the gradients). */
    public Tensor grad() {
        return grad;
    }

    public long numel() {
        return data.numel();
    }

    /** A new zero buffer laid out like the parameters (for optimizer moments or averaged weights). */
    public Tensor zeros() {
        return torch.zeros_like(data);
    }

    /** The parameter {@code name}'s view into {@code flat}, a buffer laid out like the parameters. */
    public Tensor view(Tensor flat, String name) {
        long[] slot = slots.get(name);
        if (slot == null) throw new IllegalArgumentException("no parameter " + name);
        long[] shape = Arrays.copyOfRange(slot, 1, slot.length);
        long numel = 1;
        for (long d : shape) numel *= d;
        return flat.narrow(0, slot[0], numel).view(shape);
    }

    /** Named views of every parameter into {@code flat}, with {@code prefix} before each name. */
    public Map<String, Tensor> views(Tensor flat, String prefix) {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (String k : slots.keySet()) out.put(prefix + k, view(flat, k));
        return out;
    }

    public void zeroGrad() {
        grad.zero_();
    }

    /**
     * Scales the gradients so that their global 2-norm is at most {@code max} (0 or less: no
     * clipping), as {@code torch.nn.utils.clip_grad_norm_} does; returns the norm before clipping.
     */
    public double clipGradNorm(double max) {
        try (var s = org.pixelpost.tensor.Scope.open()) {
            double norm = Tensors.item(grad.norm());
            double coef = max / (norm + 1e-6);
            if (max > 0 && coef < 1) grad.mul_(Tensors.s(coef));
            return norm;
        }
    }

    /** Frees the buffers once the parameters are freed too (they share the storage). */
    @Override
    public void close() {
        data.releaseReference();
        grad.releaseReference();
    }
}
