package org.pixelpost.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

class FlatParametersTest {
    /** Two small "layers" whose gradients come from a real backward. */
    private static Map<String, Tensor> params(Generator g) {
        Map<String, Tensor> p = new LinkedHashMap<>();
        p.put("a.weight", g.randn(3, 4).set_requires_grad(true));
        p.put("a.bias", g.randn(3).set_requires_grad(true));
        p.put("b.weight", g.randn(2, 3).set_requires_grad(true));
        return p;
    }

    private static Tensor loss(Map<String, Tensor> p, Tensor x) {
        Tensor h = torch.tanh(torch.linear(x, p.get("a.weight"), Tensors.opt(p.get("a.bias"))));
        return torch.linear(h, p.get("b.weight"), Tensors.opt(null)).square().mean();
    }

    @Test
    void gradientsLandInTheBufferAndAdamWFollowsItsFormula() {
        try (Scope s = Scope.open(); Generator g = Generator.seeded(3)) {
            Map<String, Tensor> p = params(g);
            Tensor x = g.randn(5, 4);
            float[][] before = new float[3][];
            int i = 0;
            for (Tensor t : p.values()) before[i++] = Tensors.toFloats(t);
            double b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.01, lr = 0.1;
            try (AdamW opt = new AdamW(p, b1, b2, eps, wd)) {
                // the parameters kept their values and now live in one buffer
                i = 0;
                for (Tensor t : p.values()) assertArrayEquals(before[i++], Tensors.toFloats(t));
                assertEquals(12 + 3 + 6, opt.flat().numel());

                // reference: Adam with decoupled decay, element by element in double, from the gradients backward gave
                double[][] w = new double[3][], m = new double[3][], v = new double[3][];
                i = 0;
                for (Tensor t : p.values()) {
                    float[] f = Tensors.toFloats(t);
                    w[i] = new double[f.length];
                    for (int j = 0; j < f.length; j++) w[i][j] = f[j];
                    m[i] = new double[f.length];
                    v[i] = new double[f.length];
                    i++;
                }
                for (int step = 1; step <= 3; step++) {
                    opt.zeroGrad();
                    loss(p, x).backward();
                    float[] flatGrad = Tensors.toFloats(opt.flat().grad());
                    int off = 0;
                    i = 0;
                    for (Tensor t : p.values()) {
                        float[] gr = Tensors.toFloats(t.grad());
                        for (int j = 0; j < gr.length; j++) assertEquals(gr[j], flatGrad[off + j], 0.0, "the gradient is a view of the buffer");
                        off += gr.length;
                        double c1 = 1 - Math.pow(b1, step), c2 = 1 - Math.pow(b2, step);
                        for (int j = 0; j < gr.length; j++) {
                            m[i][j] = b1 * m[i][j] + (1 - b1) * gr[j];
                            v[i][j] = b2 * v[i][j] + (1 - b2) * gr[j] * gr[j];
                            w[i][j] = w[i][j] * (1 - lr * wd) - lr * (m[i][j] / c1) / (Math.sqrt(v[i][j] / c2) + eps);
                        }
                        i++;
                    }
                    opt.step(lr);
                }
                i = 0;
                for (Tensor t : p.values()) {
                    float[] got = Tensors.toFloats(t);
                    for (int j = 0; j < got.length; j++) assertEquals(w[i][j], got[j], 1e-5, "weight " + i + "/" + j);
                    i++;
                }
                assertEquals(3, opt.steps());
            }
        }
    }

    @Test
    void anUpdateInChunksEqualsOneInOnePass() {
        try (Scope s = Scope.open(); Generator g = Generator.seeded(6)) {
            Map<String, Tensor> p = params(g), q = new LinkedHashMap<>();
            p.forEach((k, t) -> q.put(k, t.detach().clone().set_requires_grad(true)));
            Tensor x = g.randn(5, 4);
            try (FlatParameters fp = new FlatParameters(p); FlatParameters fq = new FlatParameters(q);
                 AdamW whole = new AdamW(fp, false, 0.9, 0.999, 1e-8, 0.1, AdamW.CHUNK);
                 AdamW chunked = new AdamW(fq, false, 0.9, 0.999, 1e-8, 0.1, 5)) {
                for (int step = 0; step < 3; step++) {
                    whole.zeroGrad();
                    chunked.zeroGrad();
                    loss(p, x).backward();
                    loss(q, x).backward();
                    whole.step(0.05);
                    chunked.step(0.05);
                }
                assertArrayEquals(Tensors.toFloats(fp.data()), Tensors.toFloats(fq.data()), 0f);
                assertTrue(Tensors.item(fp.data().sub(Tensors.s(0)).abs().sum()) > 0);
            }
        }
    }

    @Test
    void clippingMatchesLibtorchsGlobalNorm() {
        try (Scope s = Scope.open(); Generator g = Generator.seeded(4)) {
            Map<String, Tensor> p = params(g), q = new LinkedHashMap<>();
            p.forEach((k, t) -> q.put(k, t.detach().clone().set_requires_grad(true)));
            Tensor x = g.randn(5, 4).mul(Tensors.s(30));
            try (FlatParameters flat = new FlatParameters(p)) {
                loss(p, x).backward();
                loss(q, x).backward();
                double expected = torch.clip_grad_norm_(new org.bytedeco.pytorch.TensorVector(q.values().toArray(new Tensor[0])), 0.05, 2.0, false);
                double norm = flat.clipGradNorm(0.05);
                assertEquals(expected, norm, 1e-5 * expected);
                assertTrue(norm > 0.05, "the case clips");
                for (String k : p.keySet())
                    assertArrayEquals(Tensors.toFloats(q.get(k).grad()), Tensors.toFloats(p.get(k).grad()), 1e-6f, k);
                assertEquals(0.05, Tensors.item(flat.grad().norm()), 1e-5);
            }
        }
    }

    @Test
    void aParameterOutsideTheGraphHasAZeroGradient() {
        try (Scope s = Scope.open(); Generator g = Generator.seeded(5)) {
            Map<String, Tensor> p = params(g);
            p.put("unused", g.randn(4).set_requires_grad(true));
            try (FlatParameters flat = new FlatParameters(p)) {
                loss(p, g.randn(2, 4)).backward();
                assertTrue(p.get("unused").grad().defined());
                assertEquals(0.0, Tensors.item(p.get("unused").grad().abs().sum()), 0.0);
                assertTrue(Tensors.item(p.get("a.weight").grad().abs().sum()) > 0);
            }
        }
    }
}
