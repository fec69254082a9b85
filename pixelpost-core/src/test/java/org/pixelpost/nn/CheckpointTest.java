package org.pixelpost.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.pixelpost.model.denoiser.DiT;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/** Gradient checkpointing as a call: the same values and gradients as the plain forward, from an ordinary backward. */
class CheckpointTest {
    static double maxDiff(Tensor a, Tensor b) {
        return Tensors.item(a.sub(b).abs().max());
    }

    @Test
    void segmentsGiveTheSameGradientsToParametersAndInputsThroughSkipsAndSharedInputs() {
        try (Scope s = Scope.open(); Generator g = Generator.seeded(3)) {
            List<Tensor> w = new ArrayList<>();
            for (int i = 0; i < 6; i++) w.add(g.randn(8, 8).mul(Tensors.s(0.4)).requires_grad_(true));
            Tensor x0 = g.randn(4, 8), ctx = g.randn(4, 8), frozen = g.randn(4, 8);
            Tensor[] grads = new Tensor[2 * 8];
            double[] loss = new double[2];
            for (int mode = 0; mode < 2; mode++) {
                boolean on = mode == 1;
                Tensor x = x0.detach().requires_grad_(true), c = ctx.detach().requires_grad_(true);
                Tensor h = x.mul(Tensors.s(2)), skip = null;
                for (int i = 0; i < w.size(); i++) {
                    Tensor wi = w.get(i);
                    // a shared input (c), a frozen one, a skip from an earlier segment
                    Tensor[] in = skip == null ? new Tensor[] {h, c, frozen} : new Tensor[] {h, c, frozen, skip};
                    Tensor out = Checkpoint.call(on, t -> {
                        Tensor y = torch.tanh(t[0].matmul(wi).add(t[1]).add(t[2].mul(Tensors.s(0.1))));
                        return t.length > 3 ? y.add(t[3].mul(Tensors.s(0.5))) : y;
                    }, in);
                    if (i == 1) skip = out;
                    h = out;
                }
                Tensor l = h.square().sum();
                loss[mode] = Tensors.item(l);
                l.backward();
                for (int i = 0; i < w.size(); i++) {
                    grads[mode * 8 + i] = w.get(i).grad().clone();
                    w.get(i).grad().zero_();
                }
                grads[mode * 8 + 6] = x.grad().clone();
                grads[mode * 8 + 7] = c.grad().clone();
            }
            assertEquals(loss[0], loss[1], 1e-6);
            for (int i = 0; i < 8; i++) {
                double scale = Tensors.item(grads[i].abs().max());
                assertTrue(scale > 0, "gradient " + i + " flowed");
                assertTrue(maxDiff(grads[i], grads[8 + i]) <= 1e-6 * scale, "gradient " + i + ": " + maxDiff(grads[i], grads[8 + i]));
            }
        }
    }

    @Test
    void aCheckpointedDiTMatchesThePlainOneAndWithoutGradientsItIsAPlainCall() {
        DiT.Config c = DiT.Config.named("tiny").withLatent(4, 8).withCaptionChannels(16);
        try (DiT m = new DiT(c); Scope s = Scope.open(); Generator g = Generator.seeded(4)) {
            // the initialisation zeroes the output layer: perturb every weight so gradients reach all blocks
            try (var ng = Tensors.noGrad()) {
                for (Tensor p : m.parameters().values()) p.add_(g.randnLike(p).mul(Tensors.s(0.02)));
            }
            Tensor z = g.randn(2, 4, 8, 8), t = Tensors.fromFloats(new float[] {10, 500}, 2), tokens = g.randn(2, 5, 16);
            Tensor mask = torch.ones(2, 5).to(torch.ScalarType.Bool);
            Map<String, Tensor> params = m.parameters();
            List<Tensor> plain = new ArrayList<>();
            Tensor[] out = new Tensor[2];
            for (int mode = 0; mode < 2; mode++) {
                m.gradientCheckpointing(mode == 1);
                out[mode] = m.forward(z, t, org.pixelpost.model.Conditioning.of(tokens, mask));
                out[mode].square().mean().backward();
                int i = 0;
                for (Tensor p : params.values()) {
                    if (mode == 0) plain.add(p.grad().clone());
                    else {
                        double scale = Tensors.item(plain.get(i).abs().max()) + 1e-12;
                        assertTrue(maxDiff(plain.get(i), p.grad()) <= 1e-5 * scale, "parameter " + i + ": " + maxDiff(plain.get(i), p.grad()));
                    }
                    p.grad().zero_();
                    i++;
                }
            }
            assertTrue(maxDiff(out[0], out[1]) < 1e-6);
            try (var ng = Tensors.noGrad()) {
                assertTrue(maxDiff(m.forward(z, t, org.pixelpost.model.Conditioning.of(tokens, mask)), out[0]) < 1e-6, "no graph: a plain call");
            }
        }
    }

    @Test
    void aModuleBuiltOnTheMetaDeviceHoldsNoMemoryAndLoadsIntoRealWeights() throws Exception {
        DiT.Config c = DiT.Config.named("tiny").withLatent(4, 8).withCaptionChannels(16);
        try (DiT real = new DiT(c); Scope s = Scope.open()) {
            DiT shaped;
            try (Init meta = Init.onMeta()) {
                shaped = new DiT(c);
            }
            try (DiT m = shaped) {
                assertEquals(real.parameterCount(), m.parameterCount());
                assertTrue(m.parameters().values().stream().allMatch(Tensor::is_meta));
                m.load(real.parameters(), null);
                for (Map.Entry<String, Tensor> e : real.parameters().entrySet()) {
                    Tensor p = m.parameters().get(e.getKey());
                    assertTrue(!p.is_meta() && torch.equal(p, e.getValue()), e.getKey());
                    assertTrue(p.requires_grad());
                }
                // a copy, not the source's storage
                try (var ng = Tensors.noGrad()) {
                    real.parameters().values().iterator().next().add_(Tensors.s(1));
                }
                String k = real.parameters().keySet().iterator().next();
                assertTrue(!torch.equal(m.parameters().get(k), real.parameters().get(k)));
            }
        }
    }
}
