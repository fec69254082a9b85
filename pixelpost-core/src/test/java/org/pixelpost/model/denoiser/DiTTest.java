package org.pixelpost.model.denoiser;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Adam;
import org.bytedeco.pytorch.AdamOptions;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.schedule.NoiseSchedule;
import org.pixelpost.model.text.MiniLmTextEncoder;
import org.pixelpost.model.text.TextEncoder;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

@org.junit.jupiter.api.Tag("slow") // end to end: left out of the fast lane (mvn -Pfast test)
class DiTTest {
    /** A few thousand parameters: 4x4 latents of 4 channels, 16-dim text. */
    static DiT.Config micro() {
        return new DiT.Config(4, 4, 4, 2, 32, 2, 2, 2.0, 16);
    }

    @Test
    void shapesAndZeroOutputAtStart() {
        Engine.seed(0);
        DiT m = new DiT(DiT.Config.named("tiny"));
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor z = torch.randn(3, 32, 8, 8);
            Tensor t = Tensors.fromFloats(new float[] {1, 500, 999}, 3).to(ScalarType.Long);
            Tensor y = torch.randn(3, 5, 384);
            Tensor mask = torch.ones(3, 5).to(ScalarType.Bool);
            Tensor out = m.forward(z, t, org.pixelpost.model.Conditioning.of(y, mask));
            assertArrayEquals(new long[] {3, 32, 8, 8}, Tensors.shape(out));
            assertEquals(0.0, Tensors.item(out.abs().max()), "the output layer starts at zero");
        }
        m.close();
    }

    @Test
    void parameterCountsOfTheNamedSizes() {
        // PixArt-alpha XL/2 as published: 610,856,096 parameters ("0.6B"), counted from the configuration
        assertEquals(610_856_096L, DiT.Config.named("XL/2").parameterCount());
        assertEquals(DiT.PUBLISHED.get("xl/2"), DiT.Config.named("XL/2").parameterCount());
        // the count from the configuration is the count of the model built from it
        Engine.seed(0);
        for (DiT.Config c : List.of(DiT.Config.named("tiny"), DiT.Config.named("small"), DiT.Config.named("S/2"),
                DiT.Config.named("XL/2").narrowed(64, 2, 4, 8), micro()))
            try (DiT m = new DiT(c)) {
                assertEquals(m.parameterCount(), c.parameterCount(), c.toString());
            }
        assertEquals(4_030_400L, DiT.Config.named("tiny").parameterCount());
    }

    @Test
    void gradientsMatchFiniteDifferences() {
        Engine.seed(2);
        DiT m = new DiT(micro());
        m.to(ScalarType.Double);
        try (Scope s = Scope.open()) {
            // leave the zero initialisation, so that every path carries gradient
            try (var g = Tensors.noGrad()) {
                for (Tensor p : m.parameters().values()) p.add_(torch.randn_like(p).mul(Tensors.s(0.1)));
            }
            Tensor z = torch.randn(2, 4, 4, 4).to(ScalarType.Double);
            Tensor t = Tensors.fromFloats(new float[] {10, 700}, 2).to(ScalarType.Long);
            Tensor y = torch.randn(2, 3, 16).to(ScalarType.Double);
            Tensor mask = Tensors.fromFloats(new float[] {1, 1, 0, 1, 1, 1}, 2, 3).to(ScalarType.Bool);
            Tensor r = torch.randn(2, 4, 4, 4).to(ScalarType.Double);
            Tensor zg = z.clone().set_requires_grad(true), yg = y.clone().set_requires_grad(true);
            m.forward(zg, t, org.pixelpost.model.Conditioning.of(yg, mask)).mul(r).sum().backward();
            Map<String, Tensor> params = m.parameters();
            Tensor w = params.get("blocks.1.cross_attn.kv_linear.weight");
            checkDirectional(zg.grad(), z, d -> m.forward(z.add(d), t, org.pixelpost.model.Conditioning.of(y, mask)).mul(r).sum());
            checkDirectional(yg.grad(), y, d -> m.forward(z, t, org.pixelpost.model.Conditioning.of(y.add(d), mask)).mul(r).sum());
            Tensor wGrad = w.grad().clone(), w0 = w.detach().clone();
            checkDirectional(wGrad, w0, d -> {
                w.detach().copy_(w0.add(d));
                Tensor v = m.forward(z, t, org.pixelpost.model.Conditioning.of(y, mask)).mul(r).sum();
                w.detach().copy_(w0);
                return v;
            });
            // a masked-out token has no influence
            Tensor yg2 = yg.grad();
            assertEquals(0.0, Tensors.item(yg2.select(0, 0).select(0, 2).abs().sum()), 1e-12);
        }
        m.close();
    }

    interface F {
        Tensor at(Tensor delta);
    }

    /** Directional derivative along a random direction against central differences. */
    static void checkDirectional(Tensor grad, Tensor x, F f) {
        try (var g = Tensors.noGrad()) {
            for (int k = 0; k < 3; k++) {
                Tensor dir = torch.randn_like(x);
                double h = 1e-6;
                double numeric = (Tensors.item(f.at(dir.mul(Tensors.s(h)))) - Tensors.item(f.at(dir.mul(Tensors.s(-h))))) / (2 * h);
                double analytic = Tensors.item(grad.mul(dir).sum());
                assertEquals(numeric, analytic, 1e-6 * Math.max(1, Math.abs(numeric)));
            }
        }
    }

    @Test
    void savesAndLoadsBitExactly(@TempDir Path dir) throws Exception {
        Engine.seed(4);
        DiT m = new DiT(micro());
        m.save(dir.resolve("dit"));
        DiT back = DiT.load(dir.resolve("dit"));
        assertEquals(m.config(), back.config());
        for (var e : m.parameters().entrySet()) assertTrue(torch.equal(e.getValue(), back.parameters().get(e.getKey())), e.getKey());
    }

    @Test
    void tinyDiTOverfitsEightLatentsWithText() {
        Engine.seed(7);
        // wider than the 2*2*32 = 128 numbers each token carries, or it cannot even pass the noise through
        DiT m = new DiT(new DiT.Config(32, 32, 8, 2, 192, 3, 6, 4.0, 384));
        NoiseSchedule schedule = NoiseSchedule.sd();
        List<String> captions = List.of("grinning face", "dog face", "red heart", "slice of pizza", "rocket", "rainbow", "sunflower", "thumbs up");
        Tensor z, y, mask, evalT, evalEps;
        try (TextEncoder te = new MiniLmTextEncoder()) {
            org.pixelpost.model.Conditioning e = te.encode(captions);
            y = e.tokens();
            mask = e.mask();
        }
        z = torch.randn(8, 32, 8, 8);
        // a fixed evaluation set of 4 (t, eps) draws per latent
        evalT = torch.randint(1000, new long[] {32}).to(ScalarType.Long);
        evalEps = torch.randn(32, 32, 8, 8);
        double before = evalLoss(m, schedule, z, y, mask, evalT, evalEps);
        TensorVector params = new TensorVector(m.parameters().values().toArray(new Tensor[0]));
        Adam opt = new Adam(params, new AdamOptions(Double.parseDouble(System.getProperty("overfit.lr", "1e-3"))));
        int steps = Integer.getInteger("overfit.steps", 800);
        for (int step = 0; step < steps; step++) {
            if (step % 200 == 0) System.out.println("step " + step + " eval " + evalLoss(m, schedule, z, y, mask, evalT, evalEps));
            try (Scope s = Scope.open()) {
                Tensor t = torch.randint(1000, new long[] {8}).to(ScalarType.Long);
                Tensor eps = torch.randn(8, 32, 8, 8);
                Tensor loss = m.forward(schedule.addNoise(z, eps, t), t, org.pixelpost.model.Conditioning.of(y, mask)).sub(eps).square().mean();
                opt.zero_grad();
                loss.backward();
                opt.step();
            }
        }
        double after = evalLoss(m, schedule, z, y, mask, evalT, evalEps);
        assertTrue(after * 10 <= before, "held-fixed loss " + before + " -> " + after);
    }

    static double evalLoss(DiT m, NoiseSchedule s, Tensor z, Tensor y, Tensor mask, Tensor t, Tensor eps) {
        try (Scope sc = Scope.open(); var g = Tensors.noGrad()) {
            Tensor z4 = z.repeat(4, 1, 1, 1), y4 = y.repeat(4, 1, 1), m4 = mask.repeat(4, 1);
            return Tensors.item(m.forward(s.addNoise(z4, eps, t), t, org.pixelpost.model.Conditioning.of(y4, m4)).sub(eps).square().mean());
        }
    }
}
