package org.pixelpost.nn;

import java.util.function.Function;
import org.bytedeco.pytorch.AutoGradMode;
import org.bytedeco.pytorch.BoolOptional;
import org.bytedeco.pytorch.GradMode;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorArrayRefOptional;
import org.bytedeco.pytorch.TensorBase;
import org.bytedeco.pytorch.TensorTensorHook;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.tensor.Autocast;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * Gradient checkpointing as a call: {@code y = Checkpoint.call(on, fn, x...)} is {@code fn(x...)}
 * when {@code on} is false or no graph is being built, and otherwise a recorded segment. The
 * segment runs once without a graph and only its output is kept; when the backward reaches that
 * output, a hook recomputes {@code fn} with its graph, back-propagates through it at once
 * (parameters accumulate their gradients as usual) and hands the inputs' gradients on to the rest
 * of the graph. So a model's one forward serves both ways, and an ordinary {@code loss.backward()}
 * does the rest: there is nothing for a trainer to call.
 *
 * <p>The wiring: the output is {@code value + 0 * (anchor + sum of each input's view)}, where the
 * anchor is a scalar leaf that makes the output part of the graph even when no input takes a
 * gradient. A hook on the output runs the recomputation; a hook on each input's view replaces the
 * zero gradient the wiring gives it by the one the recomputation found. The backward must run
 * inside the {@link Scope} the forward ran in (as it does in a training step), since the hooks
 * and the saved inputs belong to it. {@code fn} must be deterministic: the replay has to compute
 * what the first run computed (no dropout drawn inside).
 */
public final class Checkpoint {
    private Checkpoint() {}

    /** {@code fn(inputs)}, checkpointed when {@code on} and gradients are recorded. */
    public static Tensor call(boolean on, Function<Tensor[], Tensor> fn, Tensor... inputs) {
        if (!on || !GradMode.is_enabled()) return fn.apply(inputs);
        Tensor[] saved = new Tensor[inputs.length];
        boolean[] wantGrad = new boolean[inputs.length];
        for (int i = 0; i < inputs.length; i++) {
            saved[i] = inputs[i] == null ? null : inputs[i].detach(); // an absent optional input (a mask) stays absent
            wantGrad[i] = inputs[i] != null && inputs[i].requires_grad() && inputs[i].is_floating_point();
        }
        org.bytedeco.pytorch.global.torch.DeviceType device = inputs[0].device().type();
        boolean autocast = torch.is_autocast_enabled(device);
        Replay replay = new Replay(fn, saved, wantGrad, autocast, device);
        // the hooks belong to the caller's scope, which the backward runs in
        TensorTensorHook[] inputHooks = new TensorTensorHook[inputs.length];
        for (int i = 0; i < inputs.length; i++) {
            int index = i;
            if (wantGrad[i]) inputHooks[i] = hook(grad -> replay.inputGrad(index, grad));
        }
        TensorTensorHook outputHook = hook(replay::run);
        Tensor out;
        try (Scope s = Scope.open()) { // the segment's intermediates are freed now, only the output is kept
            Tensor value;
            try (var g = Tensors.noGrad()) {
                value = fn.apply(saved);
            }
            Tensor link = Tensors.follow(torch.zeros(new long[0], new org.bytedeco.pytorch.TensorOptions(value.scalar_type())), value)
                .requires_grad_(true);                                                   // the anchor, []
            for (int i = 0; i < inputs.length; i++) {
                if (!wantGrad[i]) continue;
                Tensor view = inputs[i].view_as(inputs[i]);
                view.register_hook(inputHooks[i]);
                link = link.add(view.sum().to(value.scalar_type()));
            }
            out = s.keep(value.add(link.mul(Tensors.s(0))));                           // value, wired into the graph
        }
        // the output's hook replays the segment; the inputs' hooks (run after it, being upstream) take its gradients
        out.register_hook(outputHook);
        return out;
    }

    /** One segment's recomputation and the input gradients it found. */
    private static final class Replay {
        final Function<Tensor[], Tensor> fn;
        final Tensor[] saved;
        final boolean[] wantGrad;
        final boolean autocast;
        final org.bytedeco.pytorch.global.torch.DeviceType device;
        final Tensor[] grads;

        Replay(Function<Tensor[], Tensor> fn, Tensor[] saved, boolean[] wantGrad, boolean autocast, org.bytedeco.pytorch.global.torch.DeviceType device) {
            this.fn = fn;
            this.saved = saved;
            this.wantGrad = wantGrad;
            this.autocast = autocast;
            this.device = device;
            this.grads = new Tensor[saved.length];
        }

        TensorBase run(TensorBase gradOut) {
            Tensor g = new Tensor(gradOut);
            try (Scope s = Scope.open(); AutoGradMode on = new AutoGradMode(true); Autocast a = Autocast.bf16(autocast, device)) {
                Tensor[] in = new Tensor[saved.length];
                for (int i = 0; i < in.length; i++) in[i] = wantGrad[i] ? saved[i].detach().requires_grad_(true) : saved[i];
                Tensor y = fn.apply(in);
                if (y.requires_grad()) y.backward(g.to(y.scalar_type()), new BoolOptional(), false, new TensorArrayRefOptional());
                for (int i = 0; i < in.length; i++)
                    if (wantGrad[i] && in[i].grad().defined()) grads[i] = s.keep(in[i].grad().detach());
            }
            return gradOut;
        }

        TensorBase inputGrad(int i, TensorBase zero) {
            Tensor gi = grads[i];
            grads[i] = null;
            return gi == null ? zero : gi;
        }
    }

    private static TensorTensorHook hook(java.util.function.UnaryOperator<TensorBase> f) {
        return new TensorTensorHook() {
            @Override
            public TensorBase call(TensorBase grad) {
                return f.apply(grad);
            }
        };
    }
}
