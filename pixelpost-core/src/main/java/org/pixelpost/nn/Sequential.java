package org.pixelpost.nn;

import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Tensor;

/**
 * Layers applied in order. Layers that are modules are registered under their index, as
 * PyTorch's {@code nn.Sequential} names them; parameter-free layers only take up an index. Each
 * intermediate result is released as soon as the next layer has consumed it (PyTorch frees it the
 * same way, by reference count), so a long stack reuses memory instead of touching fresh pages.
 * A layer may work in place ({@code Tensor::relu_}) except the first, which would change the
 * caller's input.
 */
public final class Sequential extends Module implements Layer {
    private final List<Layer> layers = new ArrayList<>();

    public Sequential(Layer... layers) {
        for (Layer l : layers) append(l);
    }

    public Sequential append(Layer l) {
        if (l instanceof Module m) add(Integer.toString(layers.size()), m);
        layers.add(l);
        return this;
    }

    public int size() {
        return layers.size();
    }

    /** The {@code i}-th layer. */
    public Layer layer(int i) {
        return layers.get(i);
    }

    @Override
    public Tensor forward(Tensor x) {
        Tensor in = x;
        for (Layer l : layers) {
            // with gradient checkpointing each module is a segment; parameter-free layers are plain calls
            Tensor y = l instanceof Module && gradientCheckpointing() ? checkpoint(t -> l.forward(t[0]), x) : l.forward(x);
            if (y.address() == x.address()) continue; // an in-place layer: x (the owning handle) holds its result
            if (x != in) x.close(); // an intermediate of this loop: its memory is reused now, not at the scope's end
            x = y;
        }
        return x;
    }
}
