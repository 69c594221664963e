/* Readers of the evaluation benchmarks in their own published formats
 * (docs/datasets.md). Each loader fills a plain struct of items whose
 * strings live as long as the struct; free it with the matching _free.
 * Errors (missing file, bad JSON/CSV, missing column or key, wrong type)
 * return DS_EXIT_INPUT with a one-line ds_err naming the file and the
 * line or item, and leave nothing allocated. */
#ifndef DS_EVAL_DATASETS_H
#define DS_EVAL_DATASETS_H

/* ---- TruthfulQA multiple choice (data/mc_task.json) */
typedef struct {
    const char *text;
    int label; /* 1 true, 0 false */
} ds_mc_choice;

typedef struct {
    const char *question;
    int n_mc1, n_mc2;
    ds_mc_choice *mc1; /* one true answer; choices in file order */
    ds_mc_choice *mc2; /* several true answers; choices in file order */
} ds_tqa_question;

typedef struct {
    int n;
    ds_tqa_question *items;
    void *store_;
} ds_truthfulqa;

int ds_truthfulqa_load(const char *path, ds_truthfulqa *out);
void ds_truthfulqa_free(ds_truthfulqa *d);

/* ---- TruthfulQA.csv (generation format; UTF-8 BOM). Answer lists are the
 * published "; "-separated strings, unsplit. */
typedef struct {
    const char *type, *category, *question, *best_answer, *correct_answers, *incorrect_answers, *source;
} ds_tqa_row;

typedef struct {
    int n;
    ds_tqa_row *items;
    void *store_;
} ds_truthfulqa_csv;

int ds_truthfulqa_csv_load(const char *path, ds_truthfulqa_csv *out);
void ds_truthfulqa_csv_free(ds_truthfulqa_csv *d);

/* ---- HarmBench text behaviors CSV (all / test / val) */
typedef struct {
    const char *behavior;            /* Behavior */
    const char *functional_category; /* FunctionalCategory: standard, contextual, copyright */
    const char *semantic_category;   /* SemanticCategory */
    const char *tags;                /* Tags ("" when absent or empty) */
    const char *context;             /* ContextString ("" unless contextual) */
    const char *id;                  /* BehaviorID */
} ds_harmbench_behavior;

typedef struct {
    int n;
    ds_harmbench_behavior *items;
    void *store_;
} ds_harmbench;

int ds_harmbench_load(const char *path, ds_harmbench *out);
void ds_harmbench_free(ds_harmbench *d);

/* ---- AdvBench harmful_behaviors.csv */
typedef struct {
    const char *goal, *target;
} ds_advbench_item;

typedef struct {
    int n;
    ds_advbench_item *items;
    void *store_;
} ds_advbench;

int ds_advbench_load(const char *path, ds_advbench *out);
void ds_advbench_free(ds_advbench *d);

/* ---- XSTest xstest_prompts.csv */
typedef struct {
    int id;
    const char *prompt;
    const char *type;  /* e.g. homonyms, contrast_homonyms */
    int unsafe;        /* label: 0 safe, 1 unsafe */
    const char *focus; /* "" when the column is absent */
    const char *note;  /* "" when the column is absent */
} ds_xstest_item;

typedef struct {
    int n, n_safe, n_unsafe;
    ds_xstest_item *items;
    void *store_;
} ds_xstest;

int ds_xstest_load(const char *path, ds_xstest *out);
void ds_xstest_free(ds_xstest *d);

/* ---- MT-Bench question.jsonl */
typedef struct {
    int question_id;
    const char *category;
    int n_turns;
    const char **turns;
    int n_reference; /* 0 when the question has no "reference" */
    const char **reference;
} ds_mtbench_question;

typedef struct {
    int n;
    ds_mtbench_question *items;
    void *store_;
} ds_mtbench;

int ds_mtbench_load(const char *path, ds_mtbench *out);
void ds_mtbench_free(ds_mtbench *d);
#endif
