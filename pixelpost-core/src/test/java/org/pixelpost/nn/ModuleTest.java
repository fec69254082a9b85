package org.pixelpost.nn;

import static org.junit.jupiter.api.Assertions.*;

import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.pixelpost.InMemory;
import org.pixelpost.model.denoiser.DiT;
import org.pixelpost.nn.Layers.Linear;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

class ModuleTest {
    /** A linear layer that adds a constant to its input's projection: enough to see which layer a forward uses. */
    static final class Shifted extends Linear {
        Shifted(long in, long out) {
            super(in, out);
        }

        @Override
        public Tensor forward(Tensor x) {
            return super.forward(x).add(Tensors.s(100));
        }
    }

    @Test
    void replaceSwapsAChildInTheTreeAndInTheForward() {
        Engine.seed(0);
        try (DiT m = new DiT(InMemory.ditConfig(16)); Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor z = torch.randn(1, 4, 4, 4), t = Tensors.fromFloats(new float[] {500}, 1), y = torch.randn(1, 3, 16);
            Tensor mask = torch.ones(1, 3).to(torch.ScalarType.Bool);
            for (Tensor p : m.parameters().values()) p.add_(torch.randn_like(p).mul(Tensors.s(0.05)));
            Tensor before = m.forward(z, t, org.pixelpost.model.Conditioning.of(y, mask));
            var keys = m.parameters().keySet().stream().toList();
            Module old = m.child("blocks.1.mlp.fc2");
            assertNotNull(old);
            Shifted repl = new Shifted(64, 32);
            assertSame(old, m.replace("blocks.1.mlp.fc2", repl));
            assertSame(repl, m.child("blocks.1.mlp.fc2"));
            assertEquals(keys, m.parameters().keySet().stream().toList(), "the replacement takes the old child's keys");
            assertSame(repl.weight, m.parameters().get("blocks.1.mlp.fc2.weight"));
            assertFalse(torch.equal(before, m.forward(z, t, org.pixelpost.model.Conditioning.of(y, mask))), "the forward now runs the replacement");
            assertThrows(IllegalArgumentException.class, () -> m.replace("blocks.9.mlp.fc2", new Linear(64, 32)));
            old.close();
        }
    }

    @Test
    void trainableSelectsParametersByKey() {
        Engine.seed(0);
        try (DiT m = new DiT(InMemory.ditConfig(16))) {
            long n = m.trainable(k -> k.contains(".attn."));
            assertTrue(n > 0);
            assertFalse(m.trainableParameters().isEmpty());
            assertTrue(m.trainableParameters().keySet().stream().allMatch(k -> k.contains(".attn.")));
            assertEquals(n, m.trainableParameters().values().stream().mapToLong(Tensor::numel).sum());
            assertFalse(m.parameters().get("x_embedder.proj.weight").requires_grad());
        }
    }
}
