package org.pixelpost.nn;

import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Tensor;

/**
 * Layers applied in order. Layers that are modules are registered under their index, as
 * PyTorch's {@code nn.Sequential} names them; parameter-free layers only take up an index.
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

    @Override
    public Tensor forward(Tensor x) {
        for (Layer l : layers) x = l.forward(x);
        return x;
    }
}
