package org.pixelpost.io.tensorfile;

import org.pixelpost.io.check.BadFileException;
import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Tensors;

class SafeTensorsTest {
    @TempDir Path dir;

    @BeforeAll
    static void start() {
        Engine.seed(1);
    }

    @Test
    void roundTripsEveryDtypeBitExactlyWithMetadata() throws IOException {
        Map<String, Tensor> in = new LinkedHashMap<>();
        in.put("f32", torch.randn(3, 5));
        in.put("f16", torch.randn(7).to(ScalarType.Half));
        in.put("bf16", torch.randn(2, 2, 2).to(ScalarType.BFloat16));
        in.put("i64", torch.arange(new org.bytedeco.pytorch.Scalar(-4), new org.bytedeco.pytorch.Scalar(6)).to(ScalarType.Long));
        in.put("empty", torch.zeros(0, 3));
        Path f = dir.resolve("a.safetensors");
        SafeTensors.write(f, in, Map.of("format", "pt", "note", "ünïcode"));
        try (SafeTensors st = SafeTensors.open(f)) {
            assertEquals(Map.of("format", "pt", "note", "ünïcode"), st.metadata());
            assertEquals("BF16", st.entries().get("bf16").dtype());
            for (String k : in.keySet()) {
                Tensor got = st.load(k);
                assertEquals(in.get(k).scalar_type().intern(), got.scalar_type().intern(), k);
                assertArrayEquals(Tensors.shape(in.get(k)), Tensors.shape(got), k);
                assertTrue(torch.equal(in.get(k), got), k);
            }
        }
        // the data section starts 8-byte aligned, as the reference writer keeps it
        long n = ByteBuffer.wrap(Files.readAllBytes(f), 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        assertEquals(0, n % 8);
        assertEquals(1, countFiles(), "no temporary file is left behind");
    }

    @Test
    void readsTensorsPastTwoGibibytes() throws IOException {
        // A sparse file: a 2.5 GiB U8 tensor of zeros, then a small F32 tensor at a 64-bit offset.
        long big = 5L << 29;
        float[] tail = {1.5f, -2.25f, 3.125f};
        String header = "{\"big\":{\"dtype\":\"U8\",\"shape\":[" + big + "],\"data_offsets\":[0," + big + "]},"
            + "\"tail\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[" + big + "," + (big + 12) + "]}}";
        Path f = dir.resolve("big.safetensors");
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
            ByteBuffer b = ByteBuffer.allocate(8 + h.length).order(ByteOrder.LITTLE_ENDIAN);
            b.putLong(h.length).put(h);
            raf.write(b.array());
            long start = 8 + h.length + big;
            raf.seek(start);
            ByteBuffer t = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
            for (float v : tail) t.putFloat(v);
            raf.write(t.array());
        }
        assertTrue(Files.size(f) > (2L << 30));
        try (SafeTensors st = SafeTensors.open(f)) {
            assertEquals(big, st.entries().get("tail").begin());
            assertArrayEquals(tail, Tensors.toFloats(st.load("tail")));
        }
    }

    @Test
    void refusesMalformedHeader() throws IOException {
        Path f = raw("bad.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], ");
        BadFileException e = assertThrows(BadFileException.class, () -> SafeTensors.open(f));
        assertTrue(e.getMessage().startsWith(f.toString()), e.getMessage());
        assertTrue(e.getMessage().contains("malformed JSON header"), e.getMessage());
    }

    @Test
    void refusesAShapeWhoseElementCountOverflows() throws IOException {
        Path f = raw("overflow.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}");
        BadFileException e = assertThrows(BadFileException.class, () -> SafeTensors.open(f));
        assertTrue(e.getMessage().contains("'a'") && e.getMessage().contains("too large"), e.getMessage());
    }

    @Test
    void theSameTensorsAndMetadataWriteTheSameBytes() throws IOException {
        Map<String, Tensor> t = new java.util.LinkedHashMap<>();
        t.put("w", Tensors.fromFloats(new float[] {1, 2, 3}, 3));
        Map<String, String> m1 = new java.util.LinkedHashMap<>(), m2 = new java.util.LinkedHashMap<>();
        m1.put("format", "pt");
        m1.put("model", "DiT");
        m2.put("model", "DiT");
        m2.put("format", "pt");
        SafeTensors.write(dir.resolve("a.safetensors"), t, m1);
        SafeTensors.write(dir.resolve("b.safetensors"), t, m2);
        assertEquals(-1, Files.mismatch(dir.resolve("a.safetensors"), dir.resolve("b.safetensors")), "metadata order does not change the bytes");
    }

    @Test
    void refusesOverlappingOffsets() throws IOException {
        Path f = raw("overlap.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
        BadFileException e = assertThrows(BadFileException.class, () -> SafeTensors.open(f));
        assertTrue(e.getMessage().contains("overlaps"), e.getMessage());
    }

    @Test
    void refusesOutOfRangeOffsets() throws IOException {
        Path f = raw("range.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
        BadFileException e = assertThrows(BadFileException.class, () -> SafeTensors.open(f));
        assertTrue(e.getMessage().contains("truncated") && e.getMessage().contains("'a'"), e.getMessage());
        Path g = raw("size.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}", 12);
        e = assertThrows(BadFileException.class, () -> SafeTensors.open(g));
        assertTrue(e.getMessage().contains("needs 16"), e.getMessage());
    }

    @Test
    void refusesTruncatedFile() throws IOException {
        Path good = dir.resolve("good.safetensors");
        SafeTensors.write(good, Map.of("w", torch.randn(64, 64)));
        byte[] all = Files.readAllBytes(good);
        for (int cut : new int[] {4, 40, all.length - 100}) {
            Path f = dir.resolve("cut" + cut + ".safetensors");
            Files.write(f, java.util.Arrays.copyOf(all, cut));
            BadFileException e = assertThrows(BadFileException.class, () -> SafeTensors.open(f));
            assertTrue(e.getMessage().startsWith(f.toString()), e.getMessage());
        }
    }

    @Test
    void failedWriteLeavesNothing() {
        Map<String, Tensor> in = new LinkedHashMap<>();
        in.put("ok", torch.randn(3));
        in.put("complex", torch.randn(2).to(ScalarType.ComplexFloat));
        Path f = dir.resolve("never.safetensors");
        assertThrows(IllegalArgumentException.class, () -> SafeTensors.write(f, in));
        assertFalse(Files.exists(f));
        assertEquals(0, countFiles());
    }

    private long countFiles() {
        try (var s = Files.list(dir)) {
            return s.count();
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
    }

    private Path raw(String name, String header, int dataBytes) throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        Path f = dir.resolve(name);
        Files.write(f, b.array());
        return f;
    }

    private Path raw(String name, String header) throws IOException {
        return raw(name, header, 0);
    }
}
