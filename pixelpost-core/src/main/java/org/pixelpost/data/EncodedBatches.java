package org.pixelpost.data;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.objective.Batch;
import org.pixelpost.tensor.Generator;

/**
 * Batches drawn from encoded sets: each epoch is a permutation seeded by (seed, epoch), each
 * sample's flip, caption dropout and posterior draw by (seed, position in the run), so a step's data
 * depends on the seed and the step alone.
 */
public final class EncodedBatches implements Batches {
    private final EncodedSet winners, losers;
    private final int batchSize, slotsPerStep;
    private final long seed;
    private final boolean flip, sampleLatents;
    private final double captionDropout;
    private final Map<Long, long[]> orders = new HashMap<>();

    /**
     * @param losers null for captioned images (SFT); the losers of {@code winners}' pairs otherwise
     * @param slotsPerStep micro-batches per optimizer step over all processes: gradient accumulation
     *     times the number of data-parallel processes
     * @param captionDropout the probability that a sample's caption is replaced by the empty prompt,
     *     which trains the unconditional prediction that classifier-free guidance extrapolates from
     * @param sampleLatents each sample's latent a fresh draw from the VAE's posterior instead of its
     *     mean (no effect for a deterministic autoencoder)
     */
    public EncodedBatches(EncodedSet winners, EncodedSet losers, int batchSize, int slotsPerStep, long seed, boolean flip,
                          double captionDropout, boolean sampleLatents) {
        if (losers != null && losers.size() != winners.size())
            throw new IllegalArgumentException(winners.size() + " winners but " + losers.size() + " losers");
        if (batchSize < 1 || slotsPerStep < 1) throw new IllegalArgumentException("batch size and micro-batches per step must be positive");
        if (!(captionDropout >= 0 && captionDropout <= 1)) throw new IllegalArgumentException("caption dropout " + captionDropout + " is not in [0, 1]");
        this.winners = winners;
        this.losers = losers;
        this.batchSize = batchSize;
        this.slotsPerStep = slotsPerStep;
        this.seed = seed;
        this.flip = flip;
        this.captionDropout = captionDropout;
        this.sampleLatents = sampleLatents;
    }

    @Override
    public long size() {
        return winners.size();
    }

    @Override
    public Batch get(long step, int slot) {
        if (slot < 0 || slot >= slotsPerStep) throw new IllegalArgumentException("micro-batch " + slot + " of " + slotsPerStep + " per step");
        long first = (step - 1) * batchSize * (long) slotsPerStep + (long) slot * batchSize;
        long[] idx = new long[batchSize];
        boolean[] flips = new boolean[batchSize], drop = new boolean[batchSize];
        long[] draws = sampleLatents ? new long[batchSize] : null;
        for (int k = 0; k < batchSize; k++) {
            long pos = first + k;
            idx[k] = order(pos);
            if (draws != null) draws[k] = Generator.mix(seed ^ 0x9057E1L, pos);
            flips[k] = flip && new Random(Generator.mix(seed ^ 0xF11BL, pos)).nextBoolean();
            drop[k] = captionDropout > 0 && new Random(Generator.mix(seed ^ 0xCA9D0L, pos)).nextDouble() < captionDropout;
        }
        return batch(idx, flips, drop, draws);
    }

    /** The whole set in order, {@code batchSize} at a time, without flips or dropout (for validation). */
    public List<Batch> inOrder() {
        List<Batch> out = new ArrayList<>();
        for (long first = 0; first < size(); first += batchSize) {
            int b = (int) Math.min(batchSize, size() - first);
            out.add(batch(java.util.stream.LongStream.range(first, first + b).toArray(), null, null, null));
        }
        return out;
    }

    private Batch batch(long[] idx, boolean[] flips, boolean[] drop, long[] draws) {
        Batch w = winners.batch(idx, flips, drop, draws);
        if (losers == null) return w;
        long[] loserDraws = draws == null ? null : java.util.Arrays.stream(draws).map(d -> Generator.mix(d, 0x105E7L)).toArray();
        return Batch.pairs(w.z(), losers.batch(idx, flips, drop, loserDraws).z(), w.cond());
    }

    /** The sample at position {@code pos} of the run: epochs are permutations seeded by (seed, epoch). */
    long order(long pos) {
        long n = size(), epoch = pos / n;
        long[] perm = orders.computeIfAbsent(epoch, e -> {
            List<Long> l = new ArrayList<>();
            for (long i = 0; i < n; i++) l.add(i);
            Collections.shuffle(l, new Random(Generator.mix(seed, e)));
            return l.stream().mapToLong(Long::longValue).toArray();
        });
        if (orders.size() > 4) orders.keySet().removeIf(e -> e < epoch - 1);
        return perm[(int) (pos % n)];
    }
}
