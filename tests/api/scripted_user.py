"""A scripted Japanese user who answers Hera's questions (shared by API and journey tests)."""

from __future__ import annotations

SCRIPT: tuple[str, ...] = (
    "こんにちは！32歳の女性です。独身です。",
    "東京に住んでいます。年収は500万円くらいです。",
    "性格は社交的で、好奇心が強いほうです。几帳面だとよく言われます。",
    "理想の相手の顔は、優しい目をした笑顔の素敵な人です。",
    "理想の相手の名前は健太さんで、穏やかで優しい性格、背が高くて黒髪の人がいいです。",
    "子どもは男の子と女の子が欲しいです。名前は太郎と花子にしたいです。",
    "よろしくお願いします。",
    "ありがとうございます。",
)

# The family talk that reaches an agreed plan with the offline brain (three turns: a place,
# what to do there, yes).
FAMILY_AGREEING: tuple[str, ...] = (
    "沖縄に行きたいな！",
    "海で泳いだり、水族館に行ったりしたい！",
    "いいね、そうしよう！",
)

# A whole profile, as a model might extract it from one long message (Gemini tests).
COMPLETE_PROFILE = {
    "age": 32, "gender": "女性", "relationship_status": "single", "location": "東京",
    "income_range": "500万円",
    "user_personality_traits": {"openness": 0.8, "extraversion": 0.7},
    "partner_face_description": "優しい目の人",
    "ideal_partner": {"name": "健太", "temperament": "穏やか", "appearance": "背が高い"},
    "children_info": [{"name": "太郎", "desired_gender": "男の子"}],
}  # fmt: skip
