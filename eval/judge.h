/* MT-Bench judge prompts (docs/eval.md, "MT-Bench judge prompts"): FastChat's
 * single-answer grading (fastchat/llm_judge/common.py run_judge_single),
 * the templates of its judge_prompts.jsonl filled with a model's answers,
 * one prompt per (question, turn), ready for any external judge:
 * - turn 1: "single-v1" with {question} {answer}, or for the categories
 *   that need a reference (math, reasoning, coding: FastChat's
 *   NEED_REF_CATS) "single-math-v1" with {ref_answer_1} too;
 * - turn 2: "single-v1-multi-turn" with {question_1} {answer_1}
 *   {question_2} {answer_2}, or "single-math-v1-multi-turn" with
 *   {ref_answer_1} {ref_answer_2} too.
 * Templates are filled as Python's str.format does (one pass: "{{" and "}}"
 * are braces, a value is never read again for fields). Reference answers
 * come from reference_answer/gpt-4.jsonl beside the questions (FastChat's
 * default judge gpt-4; its answer format), else from the question's own
 * "reference" list. */
#ifndef DS_EVAL_JUDGE_H
#define DS_EVAL_JUDGE_H
#include <jansson.h>
#include <stdio.h>
#include "eval/datasets.h"

enum { DS_JUDGE_SINGLE = 0, DS_JUDGE_MATH, DS_JUDGE_SINGLE_MT, DS_JUDGE_MATH_MT, DS_JUDGE_N };

typedef struct {
    char *prompts_path; /* judge_prompts.jsonl */
    char *refs_path;    /* reference_answer/gpt-4.jsonl, NULL when absent */
    json_t *prompts[DS_JUDGE_N]; /* the lines named single-v1, single-math-v1, ... */
    json_t *refs;                /* question_id (as text) -> reference turns (array of strings) */
} ds_mt_judge;

/* The default judge prompts file of a questions file: judge_prompts.jsonl in
 * its directory (malloc'd). */
char *ds_mt_judge_default_path(const char *questions);

/* Independent: read the judge prompts at prompts_path (the four single-answer
 * prompts are required and their templates must use only their fields) and
 * the reference answers; check that each of the questions index[0..n) of mt
 * that needs a reference has one for each of its first two turns.
 * DS_EXIT_INPUT with ds_err naming the file (and prompt or question). */
int ds_mt_judge_load(ds_mt_judge *j, const char *prompts_path, const char *questions, const ds_mtbench *mt,
                     const int *index, int n);
void ds_mt_judge_free(ds_mt_judge *j);

/* 1 when FastChat grades the category against a reference answer. */
int ds_mt_judge_needs_ref(const char *category);

/* The judge prompts of one answered question (answers: the array of answer
 * turns of the FastChat answer record), as JSON lines to f: one per turn
 * (the first two turns; FastChat's templates have two). */
void ds_mt_judge_write(FILE *f, const ds_mt_judge *j, const ds_mtbench_question *q, const char *model_id,
                       const char *label, const json_t *answers);

/* Fill a str.format template: field {names[i]} -> values[i]. Returns a
 * malloc'd string, or NULL with err describing an unknown field or a lone
 * brace. */
char *ds_format_fields(const char *tmpl, int n, const char *const *names, const char *const *values, char *err,
                       size_t errsz);
#endif
