package org.pixelpost.nn;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.tensor.Autocast;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * Activation checkpointing by record and replay. A forward is written as segments over numbered
 * tensors; each segment runs without a graph and only its output is kept. After the loss's
 * backward has filled the gradient of the {@link #output} leaf, {@link #backward()} replays the
 * segments in reverse, each recomputed with its graph and back-propagated at once, so only one
 * segment's activations are ever alive. Parameters accumulate their gradients as usual; inputs
 * registered with {@code wantGrad} get theirs through {@link #grad}.
 */
public final class Recompute {
    private record Segment(Function<Tensor[], Tensor> fn, int[] inputs, int output, boolean autocast) {}

    private final List<Tensor> values = new ArrayList<>();
    private final List<Boolean> needsGrad = new ArrayList<>();
    private final List<Segment> segments = new ArrayList<>();
    private final List<Tensor> grads = new ArrayList<>();
    private Tensor leaf;
    private int leafId = -1;

    /** Registers an outside tensor; with {@code wantGrad} its gradient is collected by the replay. */
    public int input(Tensor t, boolean wantGrad) {
        values.add(t.detach());
        needsGrad.add(wantGrad);
        grads.add(null);
        return values.size() - 1;
    }

    /** Runs {@code fn} on the numbered tensors now, without a graph, and returns the number of its output. */
    public int apply(Function<Tensor[], Tensor> fn, int... inputs) {
        Tensor[] in = new Tensor[inputs.length];
        for (int i = 0; i < inputs.length; i++) in[i] = values.get(inputs[i]);
        Tensor out;
        // a scope of its own: the segment's intermediates are freed now, only its output is kept
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            out = s.keep(fn.apply(in));
        }
        values.add(out);
        needsGrad.add(true); // segments may hold parameters: their outputs always take part in the replay
        grads.add(null);
        segments.add(new Segment(fn, inputs, values.size() - 1, Autocast.enabled()));
        return values.size() - 1;
    }

    public Tensor value(int id) {
        return values.get(id);
    }

    /** The value of {@code id} as a leaf that requires grad: the loss is computed from it, then {@link #backward()}. */
    public Tensor output(int id) {
        leafId = id;
        leaf = values.get(id).detach().requires_grad_(true);
        return leaf;
    }

    /** Replays the segments in reverse with the gradient the loss left on the output leaf. */
    public void backward() {
        if (leaf == null) throw new IllegalStateException("no output leaf to start from");
        Tensor g = leaf.grad();
        if (g == null || !g.defined()) return; // the output took no part in the loss
        grads.set(leafId, g.detach());
        for (int s = segments.size() - 1; s >= 0; s--) {
            Segment seg = segments.get(s);
            Tensor gOut = grads.get(seg.output);
            if (gOut == null) continue;
            // one segment's graph at a time: its activations are freed when this scope closes
            try (Scope scope = Scope.open()) {
                Tensor[] in = new Tensor[seg.inputs.length];
                for (int i = 0; i < in.length; i++) {
                    Tensor v = values.get(seg.inputs[i]).detach();
                    in[i] = needsGrad.get(seg.inputs[i]) && v.is_floating_point() ? v.requires_grad_(true) : v;
                }
                Tensor out;
                try (Autocast a = Autocast.bf16(seg.autocast)) {
                    out = seg.fn.apply(in);
                }
                if (out.requires_grad())
                    out.backward(gOut.to(out.scalar_type()), new org.bytedeco.pytorch.BoolOptional(), false, new org.bytedeco.pytorch.TensorArrayRefOptional());
                for (int i = 0; i < in.length; i++) {
                    int id = seg.inputs[i];
                    if (!in[i].requires_grad() || !in[i].grad().defined()) continue;
                    Tensor gi = in[i].grad().detach();
                    grads.set(id, scope.keep(grads.get(id) == null ? gi : grads.get(id).add(gi)));
                }
            }
            grads.set(seg.output, null); // done with it
        }
    }

    /** The gradient an input registered with {@code wantGrad} received in the replay (null if none). */
    public Tensor grad(int inputId) {
        return grads.get(inputId);
    }
}
