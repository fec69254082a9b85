package org.pixelpost.cli;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.InMemory;
import org.pixelpost.TestData;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * Hostile models, LoRAs and sizes: each is refused with the file or option and the problem (or
 * warned about where the value is legal), before work starts, and no command writes into its own
 * input or leaves a half-written output.
 */
class HostileModelInputTest {
    @TempDir static Path shared;
    static Path sd, single, data;
    static final String LAYER = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";

    @BeforeAll
    static void setUp() throws Exception {
        sd = shared.resolve("sd");
        try (TextToImageModel m = InMemory.tinyStableDiffusion()) {
            m.save(sd);
        }
        single = shared.resolve("sd.safetensors");
        assertEquals("0", run("model", "convert", "--model", sd.toString(), "--out", single.toString())[0]);
        data = TestData.captionedFolder(shared.resolve("data"), TestData.EMOJI.subList(0, 2), TestData.CAPTIONS.subList(0, 2));
    }

    static String[] run(String... args) {
        return AutoencodeCommandTest.run(args);
    }

    /** A kohya LoRA on one attention projection of the tiny U-Net (32 channels), rank 4, with {@code alpha} and {@code poison} at one entry of down. */
    static Path lora(String name, double alpha, float poison) throws Exception {
        Path f = shared.resolve(name);
        try (Scope s = Scope.open(); Generator g = Generator.seeded(1)) {
            Tensor down = g.randn(4, 32).mul(Tensors.s(0.1)), up = g.randn(32, 4).mul(Tensors.s(0.1));
            if (!Float.isNaN(poison) || name.contains("nan")) down.select(0, 0).select(0, 0).fill_(Tensors.s(poison));
            Map<String, Tensor> t = new LinkedHashMap<>();
            t.put(LAYER + ".lora_down.weight", down);
            t.put(LAYER + ".lora_up.weight", up);
            t.put(LAYER + ".alpha", Tensors.scalarTensor(alpha).to(torch.ScalarType.Float));
            SafeTensors.write(f, t);
        }
        return f;
    }

    static void assertRefused(String[] r, String code, Path mustNotExist, String... mentions) {
        assertEquals(code, r[0], r[2]);
        for (String m : mentions) assertTrue(r[2].contains(m), "message names " + m + ": " + r[2]);
        assertFalse(r[2].contains("\tat "), "no stack trace: " + r[2]);
        if (mustNotExist != null) assertFalse(Files.exists(mustNotExist), mustNotExist + " was not written");
    }

    @Test
    void poisonedAndOverscaledLorasAreRefusedAndLegalOddValuesWarned() throws Exception {
        Path nan = lora("nan.safetensors", 4, Float.NaN), inf = lora("inf.safetensors", 4, Float.POSITIVE_INFINITY);
        Path out = shared.resolve("merged-nan");
        assertRefused(run("lora", "merge", "--model", sd.toString(), "--lora", nan.toString(), "--out", out.toString()), "1", out,
            "nan.safetensors", "NaN or infinite");
        assertRefused(run("lora", "merge", "--model", sd.toString(), "--lora", inf.toString(), "--out", out.toString()), "1", out, "inf.safetensors", "NaN or infinite");
        Path samples = shared.resolve("samples-nan");
        assertRefused(run("sample", "--model", sd.toString(), "--lora", nan.toString(), "--prompt", "x", "--steps", "2", "--out", samples.toString()), "1", samples,
            "nan.safetensors", "NaN or infinite");

        Path ok = lora("ok.safetensors", 4, Float.NaN);
        assertRefused(run("lora", "merge", "--model", sd.toString(), "--lora", ok + ":1e30", "--out", out.toString()), "2", out, "--lora", "1e30", "beyond");
        assertRefused(run("sample", "--model", sd.toString(), "--lora", ok + ":1e30", "--prompt", "x", "--out", samples.toString()), "2", samples, "--lora", "beyond");
        Path huge = lora("huge-alpha.safetensors", 1e9, Float.NaN);
        assertRefused(run("lora", "merge", "--model", sd.toString(), "--lora", huge.toString(), "--out", out.toString()), "1", out, "huge-alpha.safetensors", "alpha");

        // legal but surprising: merged, with a warning
        Path negative = lora("negative-alpha.safetensors", -4, Float.NaN);
        String[] r = run("lora", "merge", "--model", sd.toString(), "--lora", negative.toString(), "--out", shared.resolve("m-neg-alpha").toString());
        assertEquals("0", r[0], r[2]);
        assertTrue(r[2].contains("warning") && r[2].contains("not positive"), r[2]);
        r = run("lora", "merge", "--model", sd.toString(), "--lora", ok + ":-1", "--out", shared.resolve("m-neg-scale").toString());
        assertEquals("0", r[0], r[2]);
        assertTrue(r[2].contains("warning") && r[2].contains("reversed"), r[2]);

        // no command writes into its own input
        r = run("lora", "merge", "--model", sd.toString(), "--lora", ok.toString(), "--out", sd.toString(), "--overwrite");
        assertRefused(r, "2", null, "--out", "input model");
        r = run("lora", "export", "--lora", ok.toString(), "--model", sd.toString(), "--out", ok.toString(), "--overwrite");
        assertRefused(r, "2", null, "--out", "input LoRA");
    }

    @Test
    void convertNeverWritesIntoItsInputOrAFolderOfOtherFiles() throws Exception {
        Path inside = sd.resolve("copy.safetensors");
        assertRefused(run("model", "convert", "--model", sd.toString(), "--out", inside.toString()), "2", inside, "--out", "inside the input folder");
        // a single file converted into the folder that holds it, even when told to overwrite
        Path holder = Files.createDirectories(shared.resolve("holder")), there = holder.resolve("sd.safetensors");
        Files.copy(single, there);
        assertRefused(run("model", "convert", "--model", there.toString(), "--out", holder.toString(), "--overwrite"), "2", holder.resolve("unet"),
            "--out", "holds the input file");
        assertTrue(Files.isRegularFile(there), "the input is still there");
        Path notes = Files.createDirectories(shared.resolve("notes"));
        Files.writeString(notes.resolve("todo.txt"), "mine");
        assertRefused(run("model", "convert", "--model", single.toString(), "--out", notes.toString(), "--overwrite"), "2", notes.resolve("unet"),
            "--out", "not a model");
        assertEquals("mine", Files.readString(notes.resolve("todo.txt")));
    }

    @Test
    void aSingleFileOfIntegerWeightsIsNotAModel() throws Exception {
        Path ints = shared.resolve("int32.safetensors"), out = shared.resolve("from-int32");
        try (Scope s = Scope.open()) {
            Map<String, Tensor> all = new LinkedHashMap<>(SafeTensors.read(single));
            String k = "model.diffusion_model.input_blocks.0.0.weight";
            all.put(k, all.get(k).mul(Tensors.s(100)).to(torch.ScalarType.Int));
            SafeTensors.write(ints, all);
        }
        assertRefused(run("model", "convert", "--model", ints.toString(), "--configs", sd.toString(), "--out", out.toString()), "1", out,
            "int32.safetensors", "int", "floating point");
    }

    @Test
    void hugeCountsAreRefusedUpFront() throws Exception {
        Path samples = shared.resolve("many");
        assertRefused(run("sample", "--model", sd.toString(), "--prompt", "x", "--num-images", "2000000000", "--out", samples.toString()), "2", samples,
            "--num-images", "GB");
        assertRefused(run("sample", "--model", sd.toString(), "--prompt", "x", "--num-images", "2000000000", "--size", "64", "--out", samples.toString()), "2",
            samples, "--num-images");
        Path runDir = shared.resolve("run-huge");
        assertRefused(run("train", "--init", sd.toString(), "--data", data.toString(), "--out", runDir.toString(), "--batch-size", "2",
            "--grad-accum", "2000000000"), "2", runDir, "grad_accum", "GB");
    }
}
