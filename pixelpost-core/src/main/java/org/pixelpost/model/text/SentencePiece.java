package org.pixelpost.model.text;

import ai.djl.sentencepiece.SpProcessor;
import ai.djl.sentencepiece.SpTokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.pixelpost.io.check.BadFileException;

/**
 * A sentencepiece model ({@code spiece.model}) through the sentencepiece library (DJL's binding
 * of Google's C++ implementation): the file is checked to be a sentencepiece {@code ModelProto}
 * before the native library sees it, and it can be loaded without the dummy-prefix space, as
 * transformers' non-legacy T5 tokenizer loads it.
 */
public final class SentencePiece implements AutoCloseable {
    private final SpTokenizer tokenizer;
    private final SpProcessor sp;
    private final int pieces;

    private SentencePiece(byte[] proto, int pieces) {
        this.tokenizer = new SpTokenizer(proto);
        this.sp = tokenizer.getProcessor();
        this.pieces = pieces;
    }

    /**
     * The model in {@code file}; with {@code dummyPrefix} false the model's normalizer no longer
     * adds a space before the text ({@code add_dummy_prefix = false}).
     */
    public static SentencePiece load(Path file, boolean dummyPrefix) throws IOException {
        if (!Files.isRegularFile(file)) throw new BadFileException(file, "no such sentencepiece model file");
        byte[] bytes = Files.readAllBytes(file);
        int pieces = countPieces(file, bytes);
        if (!dummyPrefix) {
            // a second normalizer_spec (field 3) holding add_dummy_prefix (field 3) = false: protobuf merges it into the first
            byte[] edited = java.util.Arrays.copyOf(bytes, bytes.length + 4);
            edited[bytes.length] = 0x1A;
            edited[bytes.length + 1] = 0x02;
            edited[bytes.length + 2] = 0x18;
            edited[bytes.length + 3] = 0x00;
            bytes = edited;
        }
        try {
            return new SentencePiece(bytes, pieces);
        } catch (RuntimeException e) {
            throw new BadFileException(file, "the sentencepiece library refused it (" + e.getMessage() + ")");
        }
    }

    /**
     * The number of pieces of a serialized {@code ModelProto} (repeated field 1), after walking
     * every top-level field; anything that is not such a message is refused naming the file.
     */
    static int countPieces(Path file, byte[] b) throws BadFileException {
        int pos = 0, pieces = 0;
        boolean normalizer = false;
        try {
            while (pos < b.length) {
                long tag = 0;
                int shift = 0;
                while (true) {
                    if (shift > 63) throw new IllegalStateException("varint too long");
                    int x = b[pos++] & 0xFF;
                    tag |= (long) (x & 0x7F) << shift;
                    if (x < 0x80) break;
                    shift += 7;
                }
                int field = (int) (tag >>> 3), wire = (int) (tag & 7);
                if (field < 1) throw new IllegalStateException("field number 0");
                switch (wire) {
                    case 0 -> { while ((b[pos++] & 0x80) != 0) { /* skip the varint */ } }
                    case 1 -> pos += 8;
                    case 5 -> pos += 4;
                    case 2 -> {
                        long len = 0;
                        shift = 0;
                        while (true) {
                            int x = b[pos++] & 0xFF;
                            len |= (long) (x & 0x7F) << shift;
                            if (x < 0x80) break;
                            shift += 7;
                            if (shift > 35) throw new IllegalStateException("length too long");
                        }
                        if (len > b.length - pos) throw new IllegalStateException("field " + field + " runs past the end");
                        if (field == 1) {
                            // a SentencePiece message starts with its piece string (field 1, length-delimited)
                            if (len == 0 || b[pos] != 0x0A) throw new IllegalStateException("a piece without its text");
                            pieces++;
                        }
                        if (field == 3) normalizer = true;
                        pos += (int) len;
                    }
                    default -> throw new IllegalStateException("wire type " + wire);
                }
                if (pos > b.length) throw new IllegalStateException("truncated");
            }
        } catch (IllegalStateException | ArrayIndexOutOfBoundsException e) {
            throw new BadFileException(file, "not a sentencepiece model (" + (e.getMessage() == null ? "truncated" : e.getMessage()) + ")");
        }
        if (pieces == 0 || !normalizer) throw new BadFileException(file, "not a sentencepiece model (" + (pieces == 0 ? "no pieces" : "no normalizer") + ")");
        return pieces;
    }

    /** The number of pieces (the ids {@code 0 .. size-1}). */
    public int size() {
        return pieces;
    }

    /** The pieces of {@code text}. */
    public String[] pieces(String text) {
        return sp.tokenize(text);
    }

    /** The ids of {@code text}, one per piece of {@link #pieces}. */
    public int[] ids(String text) {
        return sp.encode(text);
    }

    /** The id of a piece; the unknown piece's id for text that is not one. */
    public int id(String piece) {
        return sp.getId(piece);
    }

    /** Whether {@code piece} is one of the model's pieces. */
    public boolean has(String piece) {
        int id = sp.getId(piece);
        return id >= 0 && id < pieces && piece.equals(sp.getToken(id));
    }

    public String piece(int id) {
        return sp.getToken(id);
    }

    /** The text of piece ids (sentencepiece's decoding: word-boundary marks become spaces). */
    public String decode(int[] ids) {
        return ids.length == 0 ? "" : sp.decode(ids);
    }

    @Override
    public void close() {
        tokenizer.close();
    }
}
