# Small real inputs for the Slurm tests (sourced after cluster.sh):
# ds_fixtures DIR N makes DIR/base.h5 (the shipped stories260K model),
# N real fine-tunes DIR/ft<i>.h5 (8 small AdamW steps on different TinyStories
# slices and seeds), DIR/train<i>.txt and the evaluation text DIR/valid.txt.
ds_fixtures()
{
    _dir=$1 _n=$2
    _m=$top_srcdir/data/models/stories260K _c=$top_srcdir/data/lm_corpus
    mkdir -p "$_dir" || ds_cluster_fail "cannot create $_dir"
    "$DELTASOUP" import --from llama2c "$_m/stories260K.bin" --tokenizer "$_m/tok512.bin" \
        -o "$_dir/base.h5" --quiet >/dev/null || ds_cluster_fail "import of stories260K failed"
    head -c 3000 "$_c/tinystories_valid_fragment.txt" >"$_dir/valid.txt"
    _i=1
    while [ $_i -le "$_n" ]; do
        # Slice i of the training excerpt: each user tunes on different stories.
        tail -c +$((_i * 5000)) "$_c/tinystories_train_excerpt.txt" | head -c 5000 >"$_dir/train$_i.txt"
        "$DELTASOUP" finetune --base "$_dir/base.h5" --data "$_dir/train$_i.txt" -o "$_dir/ft$_i.h5" \
            --steps 8 --batch 4 --seq-len 64 --lr 3e-4 --seed "$_i" --quiet >/dev/null ||
            ds_cluster_fail "finetune $_i failed"
        _i=$((_i + 1))
    done
}
