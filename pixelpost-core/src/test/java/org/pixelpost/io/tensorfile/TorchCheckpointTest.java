package org.pixelpost.io.tensorfile;

import org.pixelpost.io.check.BadFileException;
import static org.junit.jupiter.api.Assertions.*;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;
import org.pixelpost.tensor.Tensors;

class TorchCheckpointTest {
    @TempDir Path dir;

    @Test
    void taef2PthAndSafetensorsHoldIdenticalTensors() throws IOException {
        for (String half : new String[] {"encoder", "decoder"}) {
            Map<String, Tensor> pth = TorchCheckpoint.readStateDict(TestData.taef2().resolve("taef2_" + half + ".pth"));
            Map<String, Tensor> st = SafeTensors.read(TestData.taef2().resolve("taef2_" + half + ".safetensors"));
            assertEquals(79, pth.size());
            assertEquals(st.keySet(), pth.keySet());
            long params = 0;
            for (String k : st.keySet()) {
                assertEquals(st.get(k).scalar_type().intern(), pth.get(k).scalar_type().intern(), k);
                assertTrue(torch.equal(st.get(k), pth.get(k)), k);
                params += pth.get(k).numel();
            }
            assertEquals(half.equals("encoder") ? 1_338_528 : 1_338_499, params);
        }
    }

    @Test
    void descendsIntoStateDictAndFlattensNestedDicts() throws IOException {
        float[] w = {1, 2, 3, 4, 5, 6};
        // {"state_dict": OrderedDict("net.weight": tensor[2,3] as a transposed view), "global_step": 7,
        //  "extra": {"inner": tensor}} -- the state_dict wins; its transposed view is materialised.
        Pickle p = new Pickle().proto().emptyDict().mark()
            .str("state_dict").orderedDict().mark().str("net.weight").tensor("0", "FloatStorage", 6, 0, new long[] {3, 2}, new long[] {1, 3}).setItems()
            .str("global_step").intN(7)
            .setItems().stop();
        Path f = zip("nested.ckpt", p.bytes(), Map.of("0", floats(w)));
        Map<String, Tensor> sd = TorchCheckpoint.readStateDict(f);
        assertEquals(java.util.List.of("net.weight"), java.util.List.copyOf(sd.keySet()));
        assertArrayEquals(new long[] {3, 2}, Tensors.shape(sd.get("net.weight")));
        assertArrayEquals(new float[] {1, 4, 2, 5, 3, 6}, Tensors.toFloats(sd.get("net.weight")));

        Pickle q = new Pickle().proto().emptyDict().mark()
            .str("model").emptyDict().mark().str("w").tensor("0", "FloatStorage", 6, 2, new long[] {4}, new long[] {1}).setItems()
            .setItems().stop();
        Map<String, Tensor> flat = TorchCheckpoint.readStateDict(zip("flat.pth", q.bytes(), Map.of("0", floats(w))));
        assertArrayEquals(new float[] {3, 4, 5, 6}, Tensors.toFloats(flat.get("model.w")));
    }

    @Test
    void refusesForeignGlobalWithoutRunningIt() throws IOException {
        Path marker = dir.resolve("pwned");
        // os.system("touch <marker>") -- the classic malicious checkpoint
        Pickle p = new Pickle().proto().global("os", "system").mark().str("touch " + marker).tuple().reduce().stop();
        Path f = zip("evil.pth", p.bytes(), Map.of());
        BadFileException e = assertThrows(BadFileException.class, () -> TorchCheckpoint.load(f));
        assertTrue(e.getMessage().startsWith(f.toString()), e.getMessage());
        assertTrue(e.getMessage().contains("'os.system'"), e.getMessage());
        assertFalse(Files.exists(marker));
    }

    @Test
    void refusesTruncatedAndCorruptFiles() throws IOException {
        byte[] all = Files.readAllBytes(TestData.taef2().resolve("taef2_decoder.pth"));
        Path cut = dir.resolve("cut.pth");
        Files.write(cut, java.util.Arrays.copyOf(all, all.length / 2));
        BadFileException e = assertThrows(BadFileException.class, () -> TorchCheckpoint.readStateDict(cut));
        assertTrue(e.getMessage().startsWith(cut.toString()) && e.getMessage().contains("truncated"), e.getMessage());

        Path junk = dir.resolve("junk.pth");
        Files.writeString(junk, "definitely not a checkpoint");
        e = assertThrows(BadFileException.class, () -> TorchCheckpoint.readStateDict(junk));
        assertTrue(e.getMessage().contains("not a PyTorch zip checkpoint"), e.getMessage());

        // A pickle cut short inside an otherwise valid archive.
        byte[] pk = new Pickle().proto().emptyDict().mark().str("w").bytes();
        e = assertThrows(BadFileException.class, () -> TorchCheckpoint.load(zip("short.pth", pk, Map.of())));
        assertTrue(e.getMessage().contains("ends early"), e.getMessage());

        // A storage shorter than its tensor claims.
        Pickle p = new Pickle().proto().emptyDict().mark().str("w").tensor("0", "FloatStorage", 6, 0, new long[] {6}, new long[] {1}).setItems().stop();
        e = assertThrows(BadFileException.class, () -> TorchCheckpoint.load(zip("short-storage.pth", p.bytes(), Map.of("0", floats(new float[] {1, 2})))));
        assertTrue(e.getMessage().contains("data/0"), e.getMessage());
    }

    @Test
    void craftedPicklesAreRefusedBeforeAnyAllocationOrRecursion() throws IOException {
        // 100,000 nested dicts: refused by depth, no StackOverflowError
        Pickle deep = new Pickle().proto();
        for (int i = 0; i < 100_000; i++) deep.emptyDict().str("k");
        deep.emptyDict();
        for (int i = 0; i < 100_000; i++) deep.op('s');
        deep.stop();
        BadFileException e = assertThrows(BadFileException.class, () -> TorchCheckpoint.readStateDict(zip("deep.pth", deep.bytes(), Map.of())));
        assertTrue(e.getMessage().contains("nested"), e.getMessage());

        // a storage that claims 2^40 floats (4 TiB): refused from the archive's size, nothing allocated
        Pickle huge = new Pickle().proto().emptyDict().mark().str("w");
        huge.global("torch._utils", "_rebuild_tensor_v2").mark();
        huge.mark().str("storage").global("torch", "FloatStorage").str("0").str("cpu").longN(1L << 40).tuple().op('Q');
        huge.intN(0).longs(new long[] {4}).longs(new long[] {1}).op(0x89).orderedDict();
        huge.tuple().reduce().setItems().stop();
        e = assertThrows(BadFileException.class, () -> TorchCheckpoint.load(zip("huge.pth", huge.bytes(), Map.of("0", floats(new float[] {1, 2, 3, 4})))));
        assertTrue(e.getMessage().contains("data/0") && e.getMessage().contains("needs"), e.getMessage());

        // a view of size -1, a negative stride, a storage of an unknown type
        for (long[][] bad : new long[][][] {{{-1}, {1}}, {{2}, {-1}}}) {
            Pickle p = new Pickle().proto().emptyDict().mark().str("w").tensor("0", "FloatStorage", 4, 0, bad[0], bad[1]).setItems().stop();
            e = assertThrows(BadFileException.class, () -> TorchCheckpoint.load(zip("view.pth", p.bytes(), Map.of("0", floats(new float[] {1, 2, 3, 4})))));
            assertTrue(e.getMessage().contains("negative"), e.getMessage());
        }
        Pickle odd = new Pickle().proto().emptyDict().mark().str("w").tensor("0", "QuantumStorage", 4, 0, new long[] {4}, new long[] {1}).setItems().stop();
        e = assertThrows(BadFileException.class, () -> TorchCheckpoint.load(zip("odd.pth", odd.bytes(), Map.of("0", floats(new float[] {1, 2, 3, 4})))));
        assertTrue(e.getMessage().contains("QuantumStorage"), e.getMessage());
    }

    private Path zip(String name, byte[] pickle, Map<String, byte[]> storages) throws IOException {
        Path f = dir.resolve(name);
        try (ZipOutputStream z = new ZipOutputStream(Files.newOutputStream(f))) {
            put(z, "archive/data.pkl", pickle);
            put(z, "archive/byteorder", "little".getBytes(StandardCharsets.US_ASCII));
            for (Map.Entry<String, byte[]> e : storages.entrySet()) put(z, "archive/data/" + e.getKey(), e.getValue());
        }
        return f;
    }

    private static void put(ZipOutputStream z, String name, byte[] data) throws IOException {
        ZipEntry e = new ZipEntry(name);
        e.setMethod(ZipEntry.STORED); // torch.save stores entries uncompressed
        e.setSize(data.length);
        CRC32 crc = new CRC32();
        crc.update(data);
        e.setCrc(crc.getValue());
        z.putNextEntry(e);
        z.write(data);
        z.closeEntry();
    }

    private static byte[] floats(float[] v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) b.putFloat(f);
        return b.array();
    }

    /** Emits protocol-2 pickle opcodes, as torch.save writes them. */
    static final class Pickle {
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();

        Pickle op(int b) { out.write(b); return this; }
        Pickle proto() { return op(0x80).op(2); }
        Pickle mark() { return op('('); }
        Pickle stop() { return op('.'); }
        Pickle emptyDict() { return op('}'); }
        Pickle setItems() { return op('u'); }
        Pickle tuple() { return op('t'); }
        Pickle reduce() { return op('R'); }
        Pickle intN(int v) { op('J'); for (int i = 0; i < 4; i++) out.write(v >> (8 * i)); return this; }

        Pickle str(String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            op('X');
            for (int i = 0; i < 4; i++) out.write(b.length >> (8 * i));
            out.writeBytes(b);
            return this;
        }

        Pickle global(String module, String name) {
            op('c');
            out.writeBytes((module + "\n" + name + "\n").getBytes(StandardCharsets.US_ASCII));
            return this;
        }

        Pickle orderedDict() { return global("collections", "OrderedDict").op(')').reduce(); }

        Pickle longN(long v) { op(0x8a).op(8); for (int i = 0; i < 8; i++) out.write((int) (v >> (8 * i))); return this; }

        Pickle longs(long[] v) { mark(); for (long x : v) intN((int) x); return tuple(); }

        /** {@code _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())}. */
        Pickle tensor(String key, String storageType, int numel, int offset, long[] size, long[] stride) {
            global("torch._utils", "_rebuild_tensor_v2").mark();
            mark().str("storage").global("torch", storageType).str(key).str("cpu").intN(numel).tuple().op('Q');
            intN(offset).longs(size).longs(stride).op(0x89).orderedDict();
            return tuple().reduce();
        }

        byte[] bytes() { return out.toByteArray(); }
    }
}
