package org.pixelpost.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.model.denoiser.DiT;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/** The training benchmark's figures are consistent with the work counted from the configuration (no time limits here). */
@org.junit.jupiter.api.Tag("slow") // end to end: left out of the fast lane (mvn -Pfast test)
class BenchTrainTest {
    @Test
    void reportsWorkSpeedAndUtilisationOfEachRow() throws Exception {
        String[] r = AutoencodeCommandTest.run("bench", "train", "--no-options", "--iters", "1", "--json");
        assertEquals("0", r[0], r[2]);
        JsonNode j = Json.MAPPER.readTree(r[1]);
        JsonNode f = j.get("flops");
        int batch = j.get("batch").asInt(), tokens = j.get("text_tokens").asInt();
        double dit = batch * (double) DiT.Config.named("tiny").forwardFlops(tokens), dec = batch * 2_223_243_264.0; // TAEF2 decoder at 8x8 (FlopsTest)
        assertEquals(3 * dit / 1e9, f.get("latent").get("gflop").asDouble(), 0.006);
        assertEquals((3 * dit + 3 * dec) / 1e9, f.get("pixel").get("gflop").asDouble(), 0.006);
        assertEquals(dec / 1e9, f.get("decode").get("gflop").asDouble(), 0.006);
        assertEquals(2 * dec / 1e9, f.get("decode_backward").get("gflop").asDouble(), 0.006);
        double peak = f.get("gemm_peak_gflops").asDouble();
        assertTrue(peak > 0 && f.get("gemm_engine_gflops").asDouble() > 0, f.toString());
        for (String row : new String[] {"latent", "pixel", "decode", "decode_backward"}) {
            JsonNode x = f.get(row);
            double ms = j.get(row + "_ms").asDouble();
            assertEquals(x.get("gflop").asDouble() / ms * 1000, x.get("gflops").asDouble(), 0.01 * x.get("gflops").asDouble() + 0.1, row);
            assertEquals(x.get("gflops").asDouble() / peak, x.get("mfu").asDouble(), 0.002, row);
        }
    }

    @Test
    void twoWorkerProcessesReportTheirStepAndTheAllReducesShareOfIt(@TempDir Path dir) throws Exception {
        Path out = dir.resolve("out.json"), err = dir.resolve("err.txt");
        Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-cp", System.getProperty("java.class.path"),
            "org.pixelpost.cli.Main", "bench", "train", "--nproc-per-node", "2", "--iters", "2", "--batch", "2", "--json")
            .redirectOutput(out.toFile()).redirectError(err.toFile()).start();
        assertEquals(0, p.waitFor(), Files.readString(err));
        String printed = Files.readString(out);
        // rank 0 alone reports; Gloo's own connection line may come first on the same stream
        JsonNode j = Json.MAPPER.readTree(printed.substring(printed.indexOf('{')));
        assertEquals(2, j.get("processes").asInt());
        assertEquals(1, j.get("threads_per_process").asInt(), "two processes share the two cores");
        for (String row : new String[] {"latent", "pixel"}) {
            JsonNode r = j.get(row);
            double step = r.get("step_ms").asDouble(), ar = r.get("all_reduce_ms").asDouble();
            assertTrue(ar > 0 && ar < step, row + ": " + r);
            assertEquals(ar / step, r.get("all_reduce_share").asDouble(), 0.5 * ar / step + 0.002, row + ": " + r);
            assertTrue(r.get("step_ms_without_all_reduce").asDouble() > 0, row + ": " + r);
            // the tiny DiT's parameters, as float32
            assertEquals(DiT.Config.named("tiny").parameterCount() * 4 / 1048576.0, r.get("gradient_mib").asDouble(), 0.01, row + ": " + r);
        }
    }

    @Test
    void profileNamesEveryPhaseAndDecoderLayer(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("profile.txt");
        String[] r = AutoencodeCommandTest.run("bench", "train", "--profile", file.toString(), "--iters", "1");
        assertEquals("0", r[0], r[2]);
        String p = Files.readString(file);
        for (String phase : new String[] {"draws and noising", "denoiser forward", "target decode (no grad)", "predicted decode forward",
            "backward", "AdamW update", "zero gradients", "attn.qkv", "mlp.fc2", "new Scalar"})
            assertTrue(p.contains(phase), phase + " in\n" + p);
        // the TAEF2 decoder has 20 layers: rows 0 to 19, then their sum
        assertTrue(p.contains("\n19   Conv2d"), p);
        assertTrue(p.lines().anyMatch(l -> l.startsWith("sum ")), p);
    }

    @Test
    void savedStepHoldsItsInputsAndAConsistentLoss(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("step.safetensors");
        String[] r = AutoencodeCommandTest.run("bench", "train", "--save-step", file.toString());
        assertEquals("0", r[0], r[2]);
        try (Scope s = Scope.open()) {
            Map<String, Tensor> t = SafeTensors.read(file);
            for (String k : new String[] {"z", "tokens", "mask", "t", "eps", "alpha_bar", "denoiser.blocks.0.attn.qkv.weight", "decoder.19.weight",
                "grad.denoiser.final_layer.linear.weight"})
                assertTrue(t.containsKey(k), k);
            Map<String, String> meta = SafeTensors.open(file).metadata();
            double loss = Double.parseDouble(meta.get("loss")), latent = Double.parseDouble(meta.get("latent")), pixel = Double.parseDouble(meta.get("pixel"));
            assertEquals(latent + 8 * pixel, loss, 1e-5 * loss);
            // the saved gradient is the one whose norm is reported (the zero-initialised output layer takes all of it at step 0)
            double sq = 0;
            for (Map.Entry<String, Tensor> e : t.entrySet()) if (e.getKey().startsWith("grad.")) sq += Tensors.item(e.getValue().square().sum());
            assertEquals(Double.parseDouble(meta.get("grad_norm")), Math.sqrt(sq), 1e-6);
        }
    }
}
