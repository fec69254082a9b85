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
    @Test
    void anAdapterFillsTheLayersSlotInPlace() {
        Engine.seed(0);
        try (DiT m = new DiT(InMemory.ditConfig(16)); Scope s = Scope.open(); org.pixelpost.tensor.Generator g = org.pixelpost.tensor.Generator.seeded(1)) {
            Tensor z = torch.randn(1, 4, 4, 4), t = Tensors.fromFloats(new float[] {500}, 1), y = torch.randn(1, 3, 16);
            Tensor mask = torch.ones(1, 3).to(torch.ScalarType.Bool);
            try (var ng = Tensors.noGrad()) {
                for (Tensor p : m.parameters().values()) p.add_(torch.randn_like(p).mul(Tensors.s(0.05)));
            }
            Tensor before;
            try (var ng = Tensors.noGrad()) {
                before = m.forward(z, t, org.pixelpost.model.Conditioning.of(y, mask));
            }
            Module layer = m.child("blocks.1.mlp.fc2");
            var keys = new java.util.ArrayList<>(m.parameters().keySet());
            Lora.attach(m, p -> p.equals("blocks.1.mlp.fc2"), 2, 2, 0, g);
            assertSame(layer, m.child("blocks.1.mlp.fc2"), "the layer stays; its slot holds the adapter");
            keys.add(keys.indexOf("blocks.1.mlp.fc2.bias") + 1, "blocks.1.mlp.fc2.lora_A.weight");
            keys.add(keys.indexOf("blocks.1.mlp.fc2.lora_A.weight") + 1, "blocks.1.mlp.fc2.lora_B.weight");
            assertEquals(keys, m.parameters().keySet().stream().toList(), "A and B under the layer's path, after its own weights");
            Lora.Adapter a = ((Layers.Adaptable) layer).adapter();
            assertSame(a, Lora.adapters(m).get("blocks.1.mlp.fc2"));
            try (var ng = Tensors.noGrad()) {
                assertTrue(torch.equal(before, m.forward(z, t, org.pixelpost.model.Conditioning.of(y, mask))), "B = 0: the base model exactly");
                a.up().copy_(g.randnLike(a.up()));
                assertFalse(torch.equal(before, m.forward(z, t, org.pixelpost.model.Conditioning.of(y, mask))), "the layer's forward adds the delta");
                Lora.enable(m, false);
                assertTrue(torch.equal(before, m.forward(z, t, org.pixelpost.model.Conditioning.of(y, mask))), "off: the base model again");
            }
            assertThrows(IllegalArgumentException.class, () -> Lora.attach(m, "blocks.1.mlp.fc2", a.down(), a.up(), 2), "one adapter per slot");
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
